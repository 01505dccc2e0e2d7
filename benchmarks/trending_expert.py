"""Does "what is popular now" belong in the served score? A study, not a product feature.

The served model (a finished job's bundle, as the API serves it: training.champion.Served)
plus w * log(1 + recent decayed popularity) (training.baselines.RecentPopularity: training
rows decayed with a half-life of the newest 10% of the training period), w chosen on valid
over a grid, then read on test; beside recent popularity alone. Per-user NDCG@10, full
ranking, seen items excluded (as the job evaluates), paired 95% intervals:

    python benchmarks/trending_expert.py --data ../shared/data/ml-100k/interactions.csv \\
        --model runs/ml100k-time [--split time] [--repeats auto]

Under the time split the valid and test users' histories end at different cut-offs but the
counts are the training rows' (before the valid cut-off) for both, as the baseline has them:
production would count the events after it too, so test is conservative.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from lmrec import bundle as fmt
from paired import figure, job_data, served_scorer  # benchmarks/ is on sys.path as a script

from training.baselines import RecentPopularity
from training.champion import per_user_ndcg

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def with_trend(scorer, trend: np.ndarray, weight: float):
    boost = (weight * np.log1p(trend)).astype(np.float32)

    def score(histories):
        return np.asarray(scorer(histories), dtype=np.float32) + boost

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="PATH[:USER_COL,ITEM_COL,TIME_COL]")
    parser.add_argument("--model", required=True, help="a finished job's output folder")
    parser.add_argument("--split", default="time", choices=("loo", "time"))
    parser.add_argument("--repeats", default="auto", choices=("auto", "keep", "drop"))
    args = parser.parse_args()
    data, split = job_data(args.data, args.split, args.repeats)
    bundle = fmt.load(args.model)
    served = served_scorer(bundle, data)
    recent = RecentPopularity(split)
    out: dict = {"split": split.describe(), "model": bundle.manifest.get("served"), "grid": {}}
    per: dict[str, dict[float, np.ndarray]] = {"valid": {}, "test": {}}
    for part in per:
        evalset = split.evalset(part)
        for w in WEIGHTS:
            per[part][w] = per_user_ndcg(with_trend(served, recent.counts, w), split, evalset)
    pop = per_user_ndcg(recent, split, split.evalset("test"))
    for w in WEIGHTS:
        out["grid"][str(w)] = {p: round(float(per[p][w].mean()), 4) for p in per}
    chosen = max(WEIGHTS, key=lambda w: (per["valid"][w].mean(), -w))
    test, alone = per["test"][chosen], per["test"][0.0]
    out |= {
        "chosen_on_valid": chosen,
        "test": {
            "served": figure(alone),
            "served_with_trend": figure(test),
            "recent_popularity": figure(pop),
            "with_trend_minus_served": figure(test - alone),
            "with_trend_minus_recent_popularity": figure(test - pop),
            "served_minus_recent_popularity": figure(alone - pop),
        },
        "half_life_seconds": recent.half_life,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
