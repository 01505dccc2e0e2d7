"""Serving-runtime benchmark on a bundle: size, load time, latency, throughput, and the
float16 / int8 item-table options (size, latency, NDCG@10 change). Prints JSON.

    .venv/bin/python benchmarks/runtime.py --bundle runs/bench-quality/games \
        --data ../shared/data/games/interactions.csv

The quality columns re-evaluate the numpy runtime on the data set's leave-one-out test split
(full ranking, seen items excluded, k=10), the protocol of training/evaluate.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from lmrec import bundle as fmt
from lmrec.recommend import Filters, Recommender


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def dir_size(path: Path, names=None) -> int:
    files = [path / n for n in names] if names else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def measure(bundle_dir: Path, histories: list[np.ndarray], repeats: int) -> dict:
    loads = []
    for _ in range(repeats):
        began = time.perf_counter()
        rec = Recommender.load(str(bundle_dir))
        loads.append(time.perf_counter() - began)
    manifest = rec.bundle.manifest
    single = []
    for h in histories:
        began = time.perf_counter()
        rec.recommend(h, Filters(k=10))
        single.append((time.perf_counter() - began) * 1000)
    batch = 256
    began = time.perf_counter()
    for start in range(0, len(histories), batch):
        chunk = histories[start : start + batch]
        rec.recommend_many(chunk, [Filters(k=10)] * len(chunk))
    throughput = len(histories) / (time.perf_counter() - began)
    return {
        "serving_bytes": dir_size(bundle_dir, fmt.serving_files(manifest)),
        "weights_bytes": (bundle_dir / fmt.weights_file(manifest)).stat().st_size,
        "load_seconds_median": round(statistics.median(loads), 4),
        "latency_ms_p50": round(percentile(single, 50), 3),
        "latency_ms_p99": round(percentile(single, 99), 3),
        "batch_users_per_second": round(throughput, 1),
        "macs_per_request": rec.model.macs_per_request(50),
        "recommender": rec,
    }


def quality(rec: Recommender, data_path: str, bundle_dir: Path) -> dict:
    """Full-ranking and sampled100 test metrics of the numpy runtime."""
    from training.config import DataConfig
    from training.data import load_interactions
    from training.evaluate import evaluate, sample_negatives
    from training.split import leave_one_out

    config = json.loads((bundle_dir / "metrics.json").read_text())["config"]
    data = load_interactions(data_path, DataConfig(**config["data"]))
    if data.fingerprint != rec.bundle.manifest["data_fingerprint"]:
        raise SystemExit(f"{data_path} is not the data this bundle was trained on")
    split = leave_one_out(data)
    seed = config["train"]["seed"]
    neg = sample_negatives(split, split.test, config["train"]["sampled_negatives"], seed + 2)
    m = evaluate(rec.model, split, split.test, neg, seed=seed)
    return {
        "full_ndcg@10": round(m["full"]["ndcg@10"], 4),
        "full_hr@10": round(m["full"]["hr@10"], 4),
        "sampled100_ndcg@10": round(m["sampled100"]["ndcg@10"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--data", help="interactions the bundle was trained on (for quality)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args()
    from training.bundle_writer import requantize

    src = Path(args.bundle)
    base = Recommender.load(str(src))
    rng = np.random.default_rng(0)
    # 50-item histories of random catalog items, so every request runs the full window (the
    # bundle holds no users' histories; the cost does not depend on which items they are).
    histories = [rng.integers(1, base.model.n_items + 1, size=50) for _ in range(args.requests)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16", "int8"):
            path = src
            if dtype != base.bundle.manifest["model"]["item_table_dtype"]:
                path = Path(tmp) / dtype
                requantize(src, path, dtype)
            r = measure(path, histories, args.loads)
            rec = r.pop("recommender")
            if args.data:
                r["quality"] = quality(rec, args.data, src)
            results[dtype] = r
    import os
    import platform

    print(
        json.dumps(
            {
                "bundle": str(src),
                "model_version": base.version,
                "model": base.bundle.manifest["model"]["config"],
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "numpy": np.__version__,
                },
                "history_length": 50,
                "k": 10,
                "requests": args.requests,
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
