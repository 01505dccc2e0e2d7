"""The baselines alone, as the training job evaluates them: no teacher, the job's own data
step (the same split, evaluated users and sampled negatives), then popularity, co-occurrence
and the collaborative-filtering baselines (training/cf.py: ALS, and EASE where the catalog
allows), each tuned on valid. Prints one JSON line per data set.

    PYTHONPATH=layers/core:. python benchmarks/baselines.py \\
        --data ml-100k=../shared/data/ml-100k/interactions.csv:training/presets/ml-100k.json \\
        --data games=../shared/data/games/interactions.csv:training/presets/games.json
    PYTHONPATH=layers/core:. python benchmarks/baselines.py --rung L --work runs/scale

A data set is name=interactions[:preset]; a rung is synthesised as benchmarks/scale.py does
(the same seeded data, kept under --work) and evaluated with the job's defaults.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # quality.py, scale.py beside it

from quality import machine
from scale import RUNGS, synthesize

from training.config import ConfigError, from_hyperparameters, load_hyperparameters
from training.data import DataError
from training.evaluation import evaluate_baselines
from training.pipeline import prepare_data
from training.sagemaker import Paths


def _figures(block: dict) -> dict:
    return {
        key: [round(v, 4) for v in value] if isinstance(value, list) else round(value, 4)
        for key, value in block.items()
        if key.startswith(("ndcg@10", "hr@10"))
    }


def run(name: str, data: str, preset: str | None, work: Path) -> dict:
    hp = load_hyperparameters(preset, required=True) if preset else {}
    cfg = from_hyperparameters({**hp, "progress": "false"})
    began = time.perf_counter()
    _, split, negatives = prepare_data(Paths(data, None, work, None, None), cfg)
    data_seconds = time.perf_counter() - began
    costs: dict = {}
    began = time.perf_counter()
    metrics = evaluate_baselines(split, negatives, cfg, refit=False, costs=costs)
    return {
        "data": name,
        "file": data,
        "preset": preset,
        "users": split.data.n_users,
        "items": split.data.n_items,
        "interactions": len(split.data.items),
        "evaluated_users": len(split.evalset("test")),
        "data_seconds": round(data_seconds, 1),
        "baselines_seconds": round(time.perf_counter() - began, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "test": {
            model: {proto: _figures(block) for proto, block in splits["test"].items()}
            for model, splits in metrics.items()
        },
        "valid_ndcg@10": {m: round(s["valid"]["full"]["ndcg@10"], 4) for m, s in metrics.items()},
        "costs": costs,
        "machine": machine(),
    }


def data_spec(text: str) -> tuple[str, str, str | None]:
    """`NAME=PATH[:PRESET]` (argparse `type=`): both files must exist; one line, exit 2."""
    name, _, rest = text.partition("=")
    path, _, preset = rest.partition(":")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=PATH[:PRESET]")
    for given in (path, preset):
        if given and not Path(given).is_file():
            raise argparse.ArgumentTypeError(f"{text!r}: no such file {given}")
    return name, path, preset or None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", action="append", default=[], type=data_spec, help="name=interactions[:preset]"
    )
    ap.add_argument("--rung", choices=sorted(RUNGS), action="append", default=[])
    ap.add_argument("--work", type=Path, default=Path("runs/baselines"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    jobs = list(args.data)
    for rung in args.rung:
        path = args.work / rung / "interactions.parquet"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            synthesize(*RUNGS[rung], 0).to_parquet(path, index=False)
        jobs.append((rung, str(path), None))
    for name, path, preset in jobs:
        try:  # one line and exit 2, not a traceback
            row = run(name, path, preset, args.work / name)
        except (ConfigError, DataError) as exc:
            ap.error(f"{name}: {exc}")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
