"""Probe: the user-history expert's boost scaled by each user's own repeat propensity (a
RepeatNet-like per-user choice between repeating and exploring) against the plain expert,
on a finished job's bundle; test split, every point of a weight grid (x 1/4 ... 4 of the
bundle's weight, its decay), all / repeat / explore targets. Prints one JSON object.

    python benchmarks/history_propensity.py --data PATH[:USER,ITEM,TIME] --model JOB_OUTPUT \\
        --split time

The propensity of a history is its share of items already seen earlier in it (the expert's
window), shrunk toward the data's repeated-row share p0 with the weight of 10 items:
g = (repeats + 10 p0) / (n + 10); the boost becomes weight * (g / p0) * log1p(own count).
Repeats kept (the job's setting for these bundles). A probe, not the product: nothing here
is served (docs/experiments.md says what it showed).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from lmrec import bundle as fmt
from lmrec.history import HistoryExpert, decayed_counts

from training.champion import Served, in_rows, per_user_ndcg, row_map
from training.config import RunConfig
from training.data import load_interactions
from training.evaluate import is_repeat
from training.split import make_split

SHRINK = 10.0  # items of prior weight behind the data's repeat share
MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


class Propensity(HistoryExpert):
    """The history expert with each history's boost scaled by its repeat propensity."""

    prior: float = 0.5

    def boosts(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, items, sums = decayed_counts(histories, self.decay, self.window)
        g = np.empty(len(histories))
        for i, h in enumerate(histories):
            tail = np.asarray(h[-self.window :])
            repeats = len(tail) - len(np.unique(tail))
            g[i] = (repeats + SHRINK * self.prior) / (max(len(tail) - 1, 0) + SHRINK)
        scale = self.weight * g[rows] / self.prior
        return rows, items, (scale * np.log1p(sums)).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="PATH[:USER_COL,ITEM_COL,TIME_COL]")
    p.add_argument("--model", required=True, help="a finished job's output folder")
    p.add_argument("--split", default="time", choices=("loo", "time"))
    a = p.parse_args()
    path, _, cols = a.data.partition(":")
    cfg = RunConfig()
    cfg.data.repeats = "keep"
    if cols:
        cfg.data.user_col, cfg.data.item_col, cfg.data.time_col = cols.split(",")
    data = load_interactions(path, cfg.data)
    split = make_split(data, a.split, False)
    bundle = fmt.load(a.model)
    base = Served.of(bundle)
    if base.history is None:
        raise SystemExit(f"{a.model}: the bundle has no history expert")
    test = split.evalset("test")
    hist = [split.history(u, n) for u, n in zip(test.users, test.prefix_len, strict=True)]
    repeat = is_repeat(hist, test.targets)
    rows = row_map(data.item_ids, bundle.catalog)
    prior = float(data.stats["repeats"]["share"])
    out: dict = {"data": path, "model": a.model, "split": a.split, "prior": prior}
    out |= {"users": len(test), "repeat_targets": int(repeat.sum()), "points": []}
    for kind in ("plain", "propensity"):
        for m in MULTIPLIERS:
            h = base.history
            expert = (HistoryExpert if kind == "plain" else Propensity)(
                h.weight * m, h.decay, h.window
            )
            if isinstance(expert, Propensity):
                expert.prior = prior
            served = Served(base.model, base.table, base.popularity, expert)
            ndcg = per_user_ndcg(in_rows(served, rows), split, test)
            parts = {"all": ndcg, "repeat": ndcg[repeat], "explore": ndcg[~repeat]}
            point = {"kind": kind, "weight": expert.weight}
            out["points"].append(point | {k: round(float(v.mean()), 4) for k, v in parts.items()})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
