"""Repeats and splits benchmark: data set x split (loo / time) x targets (all / repeat /
explore) x model, test NDCG@10 and HR@10 with 95% intervals, as JSON.

Each run is the real training entry (`python -m training train`) under a short whole-job
budget (`max_total_seconds`, default 150 s), repeats=auto; the data are read from paths
given here, never downloaded:

    python benchmarks/repeats.py --data ml-100k=../shared/data/ml-100k/interactions.csv \\
        --data wikipedia=runs/data/wikipedia.csv:u,i,ts [--splits loo,time] [--set k=v ...]

`NAME=PATH[:USER_COL,ITEM_COL,TIME_COL]`. The repeat / explore rows exist when the job kept
repeats (a target already in the user's history is a repeat target).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import REPO, machine

from training.config import set_argument

PARTS = {"all": "full", "repeat": "full_repeat", "explore": "full_explore"}


def _spec(text: str) -> tuple[str, str, list[str]]:
    name, _, rest = text.partition("=")
    path, _, cols = rest.partition(":")
    sets = []
    if cols:
        user, item, when = cols.split(",")
        sets = [f"user_col={user}", f"item_col={item}", f"time_col={when}"]
    if not name or not Path(path).is_file():
        raise SystemExit(f"--data {text!r}: expected NAME=PATH to an existing file")
    return name, path, sets


def _train(path: str, out: Path, sets: list[str]) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "training", "train", "--data", path, "--output", str(out)]
    cmd += ["--fresh", "--checkpoints", str(out) + "-checkpoints"]
    for item in sets:
        cmd += ["--set", item]
    began = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(str(out) + ".log", "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"{out.name}: training failed: {Path(str(out) + '.log').read_text()[-1500:]}"
        )
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - began


def _rows(doc: dict) -> list[dict]:
    served = doc["summary"].get("served", {})
    from lmrec.bundle import metric_label

    label = metric_label(served) if served else None
    out = []
    for model, splits in doc["metrics"].items():
        test = splits.get("test", {})
        for part, key in PARTS.items():
            if key not in test:
                continue
            fig = test[key]
            out.append(
                {
                    "model": model + (" (served)" if model == label else ""),
                    "part": part,
                    "users": fig["users"],
                    "ndcg@10": round(fig["ndcg@10"], 4),
                    "ndcg@10_ci95": [round(x, 4) for x in fig["ndcg@10_ci95"]],
                    "hr@10": round(fig["hr@10"], 4),
                    "hr@10_ci95": [round(x, 4) for x in fig["hr@10_ci95"]],
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, type=_spec)
    parser.add_argument("--splits", default="loo,time")
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-repeats"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], type=set_argument)
    args = parser.parse_args()
    base = ["progress=false", "max_total_seconds=150", "num_threads=1", *args.overrides]
    results = []
    for name, path, sets in args.data:
        for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
            out = Path(args.out) / f"{name}-{split}"
            doc, wall = _train(path, out, [*sets, f"split={split}", *base])
            summary = doc["summary"]
            results.append(
                {
                    "data": name,
                    "split": summary.get("split"),
                    "repeats": summary.get("repeats"),
                    "evaluated_users": summary["evaluated_users"],
                    "served": summary.get("served"),
                    "history_expert": summary.get("history_expert", {}).get("chosen"),
                    "wall_seconds": round(wall, 1),
                    "rows": _rows(doc),
                }
            )
            print(f"{name} {split}: {wall:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps({"machine": machine(), "settings": base, "results": results}, indent=1))


if __name__ == "__main__":
    main()
