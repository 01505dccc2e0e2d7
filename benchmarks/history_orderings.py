"""How well can a user's own items be ordered without a model? For the targets that are
repeats (the next item is already in the history), NDCG@10 of the target among the history's
distinct items under several orderings, each paired against recency (own_recent's order),
on valid (each user's next-to-last interaction) and test (the last), leave-one-out by time.

If recency is the best ordering, the history expert's recency form at a large weight is
already as good as the repeat part can be, and a lead over own_recent must come from the
targets that are new to the user. Prints JSON:

    python benchmarks/history_orderings.py --data /path/collegemsg.csv [--cols u,i,t]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

# name -> (decay per distinct-item rank, weight of log(1 + count)); None = frequency
ORDERINGS: dict[str, tuple[float, float] | None] = {
    "recency": (0.5, 0.0),
    "frequency": None,
    "decay 0.7 x (1 + count)^0.5": (0.7, 0.5),
    "decay 0.5 x (1 + count)": (0.5, 1.0),
    "decay 0.8 x (1 + count)^0.5": (0.8, 0.5),
    "decay 0.9 x (1 + count)": (0.9, 1.0),
}


def _scores(history: np.ndarray, ordering: tuple[float, float] | None):
    """The history's distinct items (newest first) and each one's score."""
    newest_first = history[::-1]
    items, first = np.unique(newest_first, return_index=True)
    order = np.argsort(first)
    items = items[order]
    rank = np.arange(len(items), dtype=np.float64)
    counts = np.array([np.count_nonzero(history == x) for x in items], dtype=np.float64)
    if ordering is None:
        return items, counts - 1e-6 * rank  # ties broken by recency
    decay, weight = ordering
    return items, rank * np.log(decay) + weight * np.log1p(counts)


def _ndcg(history: np.ndarray, target: int, ordering) -> float:
    items, scores = _scores(history, ordering)
    mine = scores[items == target][0]
    place = np.count_nonzero(scores > mine) + (np.count_nonzero(scores == mine) - 1) / 2
    return 1.0 / np.log2(place + 2) if place < 10 else 0.0


def cases(path: str, cols: list[str]) -> dict[str, list[tuple[np.ndarray, int]]]:
    frame = pd.read_csv(path, usecols=cols).rename(columns=dict(zip(cols, "uit", strict=True)))
    frame = frame.sort_values(["u", "t"], kind="stable")
    out: dict[str, list[tuple[np.ndarray, int]]] = {"valid": [], "test": []}
    for _, group in frame.groupby("u", sort=False):
        items = group["i"].to_numpy()
        if len(items) < 3:
            continue
        for part, end in (("valid", len(items) - 2), ("test", len(items) - 1)):
            history, target = items[:end], int(items[end])
            if target in history:
                out[part].append((history, target))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CSV with user, item, time columns")
    parser.add_argument("--cols", default="user_id,item_id,timestamp")
    args = parser.parse_args()
    by_part = cases(args.data, args.cols.split(","))
    report: dict = {"data": args.data, "repeat_targets": {p: len(c) for p, c in by_part.items()}}
    for part, found in by_part.items():
        base = np.array([_ndcg(h, t, ORDERINGS["recency"]) for h, t in found])
        rows = {}
        for name, ordering in ORDERINGS.items():
            values = np.array([_ndcg(h, t, ordering) for h, t in found])
            gain = values - base
            half = 1.96 * gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else 0.0
            rows[name] = {
                "ndcg@10": round(float(values.mean()), 4),
                "minus_recency": [
                    round(float(x), 4)
                    for x in (gain.mean(), gain.mean() - half, gain.mean() + half)
                ],
            }
        report[part] = rows
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
