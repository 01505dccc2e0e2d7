"""Hyperparameter sweep: run the real training entry once per configuration, several at a
time, and print one JSON document with each run's figures.

Meant for a machine with room for parallel runs (a GPU box); on a 2-core laptop use
--parallel 1. Every run is `python -m training train` with a preset plus overrides, so what
the sweep finds is exactly what the preset would do.

    python benchmarks/sweep.py --data ../shared/data/games/interactions.csv \
        --preset training/presets/games.json --out runs/sweep \
        --config base: --config wide:d_model=256 --config decay:lr_decay=0.3,patience=4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from training.config import COMMA_PAIRS, key_values, set_argument

REPO = Path(__file__).resolve().parents[1]


def parse_config(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:key=value,...")
    pairs = [kv for kv in rest.split(",") if kv]
    key_values(pairs, hint=COMMA_PAIRS)
    return name, pairs


def summarize(model_dir: Path) -> dict:
    """The figures a sweep compares, from one run's metrics.json."""
    doc = json.loads((model_dir / "metrics.json").read_text())
    out: dict = {}
    for model, splits in doc["metrics"].items():
        for split, protocols in splits.items():
            for protocol, values in protocols.items():
                for metric in ("ndcg@10", "hr@10"):
                    out[f"{model}.{split}.{protocol}.{metric}"] = round(values[metric], 4)
    summary = doc["summary"]
    out["best_epoch"] = summary["best_epoch"]
    out["teacher_train_seconds"] = round(summary["train_seconds"], 1)
    out["sequences_per_second"] = round(summary["sequences_per_second"], 1)
    out["device"] = summary["device"]
    return out


def run_one(name: str, overrides: list[str], args: argparse.Namespace, deadline: float) -> dict:
    out = args.out / name
    cmd = [sys.executable, "-m", "training", "train", "--data", str(args.data)]
    cmd += ["--output", str(out), "--hyperparameters", str(args.preset)]
    if args.items:
        cmd += ["--items", str(args.items)]
    for kv in ["progress=false", f"num_threads={args.threads}", *args.set, *overrides]:
        cmd += ["--set", kv]
    began = time.perf_counter()
    with (args.out / f"{name}.log").open("w") as log:
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(deadline - time.time(), 1),
            )
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            status = "timeout"
    row = {"name": name, "overrides": overrides, "status": status}
    row["wall_seconds"] = round(time.perf_counter() - began, 1)
    if status == "ok":
        row.update(summarize(out))
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a path or an s3:// URI")
    parser.add_argument("--items")
    parser.add_argument("--preset", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "sweep")
    parser.add_argument("--config", type=parse_config, action="append", required=True)
    parser.add_argument(
        "--set", action="append", default=[], type=set_argument, help="key=value for every run"
    )
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 4))
    parser.add_argument("--budget", type=float, default=3600, help="seconds for the whole sweep")
    args = parser.parse_args()
    if args.parallel < 1 or args.threads < 1:
        parser.error("--parallel and --threads must be >= 1")
    # Runs start in the repository: local paths given relative to here must still work.
    args.out, args.preset = args.out.resolve(), args.preset.resolve()
    args.data, args.items = (
        str(Path(p).resolve()) if p and Path(p).exists() else p for p in (args.data, args.items)
    )
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget
    began = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda c: run_one(c[0], c[1], args, deadline), args.config))
    print(
        json.dumps(
            {
                "data": str(args.data),
                "preset": str(args.preset),
                "parallel": args.parallel,
                "wall_seconds": round(time.perf_counter() - began, 1),
                "runs": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
