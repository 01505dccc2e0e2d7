"""What `LMREC_COLD_START=auto` serves on each data set: the training job's cold-start choice
(training/cold_start.py) without training a model, since it reads two counting baselines
only. For each data set and split: popularity and recent popularity on valid and test (full
ranking, NDCG@10, the job's evaluated users), the paired difference, and the choice.

    python benchmarks/cold_start.py --data ml-100k=../shared/data/ml-100k/interactions.csv \\
        --data wikipedia=runs/data/wikipedia.csv:u,i,ts [--splits loo,time] [--set k=v ...]

`NAME=PATH[:USER_COL,ITEM_COL,TIME_COL]`; `--set` takes the job's data settings (repeats,
tie_order, ...). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import machine
from repeats import _spec

from training.baselines import Popularity, RecentPopularity
from training.cold_start import choose_cold_start
from training.config import ConfigError, from_hyperparameters, key_values, set_argument
from training.data import DataError, load_interactions
from training.evaluate import evaluate, sample_negatives
from training.split import make_split


def measure(path: str, sets: list[str], split_name: str) -> dict:
    hp = key_values(sets)
    cfg = from_hyperparameters(hp | {"split": split_name})
    data = load_interactions(path, cfg.data)
    keep = data.stats.get("repeats", {}).get("mode") == "keep"
    split = make_split(data, split_name, exclude_seen=not keep)
    split.sample_eval_users(cfg.train.eval_users, seed=cfg.train.seed + 3)
    per_user: dict[str, dict[str, np.ndarray]] = {"valid": {}, "test": {}}
    figures: dict[str, dict[str, float]] = {"valid": {}, "test": {}}
    for i, part in enumerate(("valid", "test")):
        evalset = split.evalset(part)
        negatives = sample_negatives(split, evalset, 100, seed=cfg.train.seed + 1 + i)
        for make in (Popularity, RecentPopularity):
            baseline = make(split)
            values = per_user[part][baseline.name] = np.zeros(len(evalset))
            row = evaluate(baseline, split, evalset, negatives, per_user=values)["full"]
            figures[part][baseline.name] = round(row["ndcg@10"], 4)
    record = choose_cold_start(per_user["valid"], per_user["test"])
    return {"split": split_name, "repeats": data.stats.get("repeats", {}).get("mode")} | {
        "ndcg@10": figures,
        "cold_start": record,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, type=_spec)
    parser.add_argument("--splits", default="loo,time")
    parser.add_argument("--set", dest="overrides", action="append", default=[], type=set_argument)
    args = parser.parse_args()
    results = []
    for name, path, sets in args.data:
        for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
            began = time.perf_counter()
            try:  # one line and exit 2, not a traceback
                row = measure(path, [*sets, *args.overrides], split)
            except (ConfigError, DataError) as exc:
                parser.error(f"{name} {split}: {exc}")
            row = {"data": name, **row, "seconds": round(time.perf_counter() - began, 1)}
            results.append(row)
            print(f"{name} {split}: {row['cold_start']['why']}", file=sys.stderr, flush=True)
    print(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
