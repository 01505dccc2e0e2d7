"""The served model against each baseline on the same test users: per-user NDCG@10 and the
paired difference with its 95% interval (all / repeat / explore targets, and "new": targets
no training row holds), as JSON; with --against, against another job's served model too.

Separate intervals of two figures measured on the same users overlap long before the
difference is noise; the paired interval is the one that says. Reads a finished job's
bundle (the model as the API serves it: training.champion.Served) and rebuilds its split
from the same data and settings:

    python benchmarks/paired.py --data runs/data/wikipedia.csv:u,i,ts \\
        --model runs/bench-repeats/wikipedia-time [--split time] [--repeats keep] \\
        [--against runs/before/wikipedia-time]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from lmrec import bundle as fmt

from training.baselines import CoOccurrence, OwnFrequent, OwnRecent, RecentPopularity
from training.champion import Served, in_rows, per_user_ndcg, row_map
from training.config import RunConfig
from training.data import Interactions, load_interactions
from training.evaluate import ci95, is_repeat
from training.split import Split, make_split


def figure(values: np.ndarray) -> dict:
    n, total = len(values), float(values.sum())
    ci = ci95(total, float((values * values).sum()), n)
    return {"users": n, "mean": round(total / max(n, 1), 4), "ci95": [round(x, 4) for x in ci]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="PATH[:USER_COL,ITEM_COL,TIME_COL]")
    parser.add_argument("--model", required=True, help="a finished job's output folder")
    parser.add_argument("--split", default="time", choices=("loo", "time"))
    parser.add_argument(
        "--repeats", default="auto", choices=("auto", "keep", "drop"), help="as the job had it"
    )
    parser.add_argument("--against", help="another finished job on the same data and split")
    parser.add_argument(
        "--eval-users",
        type=int,
        default=0,
        help="the job's sample of eval_users (drawn as training/pipeline.py does); 0 = all",
    )
    parser.add_argument("--seed", type=int, default=42, help="the job's seed")
    args = parser.parse_args()
    data, split = job_data(args.data, args.split, args.repeats)
    if args.eval_users:
        split.sample_eval_users(args.eval_users, seed=args.seed + 3)
    test = split.evalset("test")
    bundle = fmt.load(args.model)
    ours = per_user_ndcg(served_scorer(bundle, data), split, test)
    hist = [split.history(u, p) for u, p in zip(test.users, test.prefix_len, strict=True)]
    parts = {"all": np.ones(len(test), bool), "repeat": is_repeat(hist, test.targets)}
    parts["explore"] = ~parts["repeat"]
    if split.never_trained[test.targets].any():
        parts["new"] = split.never_trained[test.targets]
    out: dict = {"served": {p: figure(ours[m]) for p, m in parts.items()}, "vs": {}}
    others = [(make.name, make(split)) for make in (OwnRecent, OwnFrequent, CoOccurrence)]
    others.append((RecentPopularity.name, RecentPopularity(split)))
    if args.against:
        others.append(("against", served_scorer(fmt.load(args.against), data)))
    for name, scorer in others:
        theirs = per_user_ndcg(scorer, split, test)
        out["vs"][name] = {
            p: {
                "baseline": figure(theirs[m]),
                "served_minus_baseline": figure(ours[m] - theirs[m]),
            }
            for p, m in parts.items()
        }
    out |= {"split": split.describe(), "model": bundle.manifest.get("served")}
    print(json.dumps(out, indent=1))


def job_data(spec: str, split_name: str, repeats: str) -> tuple[Interactions, Split]:
    """The data and split a finished job had: `spec` is PATH[:USER_COL,ITEM_COL,TIME_COL]."""
    path, _, cols = spec.partition(":")
    cfg = RunConfig()
    cfg.data.repeats = repeats
    if cols:
        cfg.data.user_col, cfg.data.item_col, cfg.data.time_col = cols.split(",")
    data = load_interactions(path, cfg.data)
    return data, make_split(data, split_name, data.stats["repeats"]["mode"] == "drop")


def served_scorer(bundle, data):
    """The bundle's served model as the API serves it, scoring the split's item rows."""
    return in_rows(Served.of(bundle), row_map(data.item_ids, bundle.catalog))


if __name__ == "__main__":
    main()
