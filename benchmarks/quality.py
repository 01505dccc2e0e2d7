"""Quality benchmark: train the teacher on Games and MovieLens 100K and print JSON.

Reads ../shared/data (not shipped with the repo). Each data set runs the real training entry
(`python -m training train`) with its preset in training/presets/, then this script collects
metrics.json beside the published reference.

    .venv/bin/python benchmarks/quality.py [--datasets games,ml-100k] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from training.config import set_argument

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

DATASETS = {
    "games": {"train": SHARED / "games" / "interactions.csv", "items": None},
    "ml-100k": {
        "train": SHARED / "ml-100k" / "interactions.csv",
        "items": SHARED / "ml-100k" / "items.csv",
    },
}
# Kang & McAuley, ICDM 2018, Table 3: SASRec on this exact Games file, sampled protocol.
PUBLISHED = {
    "games": {
        "model": "SASRec (Kang & McAuley 2018)",
        "protocol": "sampled100",
        "hr@10": 0.7410,
        "ndcg@10": 0.5360,
    }
}


def machine() -> dict:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def _rounded(value: float | int | list) -> float | int | list:
    """4 decimals; a confidence interval ([low, high]) element by element."""
    if isinstance(value, list):
        return [round(v, 4) for v in value]
    return round(value, 4)


def run(name: str, out: Path, overrides: list[str]) -> dict:
    spec = DATASETS[name]
    cmd = [
        sys.executable,
        "-m",
        "training",
        "train",
        "--data",
        str(spec["train"]),
        "--output",
        str(out / name),
        "--checkpoints",
        str(out / f"{name}-checkpoints"),
        "--hyperparameters",
        str(REPO / "training" / "presets" / f"{name}.json"),
        "--set",
        "progress=false",
    ]
    if spec["items"]:
        cmd += ["--items", str(spec["items"])]
    for item in overrides:
        cmd += ["--set", item]
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.log", "w") as log:  # the per-epoch lines, for the record
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        tail = (out / f"{name}.log").read_text()[-2000:]
        raise SystemExit(f"{name}: training failed ({proc.returncode}): {tail}")
    doc = json.loads((out / name / "metrics.json").read_text())
    test = doc["metrics"]
    histories = json.loads((out / name / "history.json").read_text())
    # Every teacher the run trained (an ensemble trains several, one after another).
    teacher_rows = [
        row
        for phase in doc["summary"].get("teacher_phases", ["teacher"])
        for row in histories[phase]
    ]
    return {
        "wall_seconds": round(wall, 1),
        "teacher_train_seconds": round(doc["summary"]["train_seconds"], 1),
        # Time to the selected teacher: every epoch's training and validation, as run.
        "teacher_seconds_with_eval": round(
            sum(row["epoch_seconds"] + row.get("eval_seconds", 0.0) for row in teacher_rows), 1
        ),
        "best_epoch": doc["summary"]["best_epoch"],
        "epochs_run": len(histories["teacher"]),
        "models": doc["summary"]["models"],
        "sequences_per_second": round(doc["summary"]["sequences_per_second"], 1),
        "test": {
            m: {p: {k: _rounded(v) for k, v in test[m]["test"][p].items()} for p in test[m]["test"]}
            for m in test
        },
        "published": PUBLISHED.get(name),
        "data": doc["summary"]["data"],
        "config": doc["config"],
        "protocol": doc["protocol"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="games,ml-100k")
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-quality"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], type=set_argument)
    args = parser.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    missing = [n for n in names if n not in DATASETS or not DATASETS[n]["train"].exists()]
    if missing:
        raise SystemExit(
            f"unknown or missing data set(s): {', '.join(missing)} (looked in {SHARED})"
        )
    results = {n: run(n, Path(args.out), args.overrides) for n in names}
    print(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
