"""Warm latency of POST /v1/rankings (500 candidates) beside POST /v1/recommendations, through
the Lambda handler in one process, on one thread. Prints JSON.

Both routes get the same 50-item histories; the requests alternate, so a busy machine slows
both alike. `model_only` times the same requests on the Recommender alone (no FastAPI, no
reply building). BLAS is held to one thread here; pin the process to one core as well:

    taskset -c 0 .venv/bin/python benchmarks/rankings_latency.py --bundle runs/my-model
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads BLAS

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from lmrec.local.stack import LambdaContext  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HANDLER = REPO / "functions" / "api" / "app.py"


def event(route: str, body: dict) -> dict:
    name = "api_post_rankings.json" if route == "rankings" else "api_post_recommendations.json"
    out = json.loads((REPO / "events" / name).read_text())
    out["body"] = json.dumps(body)
    return out


def figures(times: list[float]) -> dict:
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
        "requests": len(times),
    }


def measure(module, pairs: list[tuple[dict, dict]], warmup: int) -> dict:
    times: dict[str, list[float]] = {"recommendations": [], "rankings": []}
    for i, pair in enumerate(pairs):
        for name, e in zip(times, pair, strict=True):
            began = time.perf_counter()
            reply = module.handler(e, LambdaContext())
            elapsed = (time.perf_counter() - began) * 1000
            if reply["statusCode"] != 200:
                raise SystemExit(f"{name}: answered {reply['statusCode']}: {reply['body'][:300]}")
            if i >= warmup:
                times[name].append(elapsed)
    return {name: figures(t) for name, t in times.items()}


def measure_model(rec, pairs: list[tuple[dict, dict]], warmup: int) -> dict:
    """The same requests without the API: Recommender.recommend (k=10) and Recommender.rank
    on the rows the route would pass (ids looked up, outside the timing)."""
    times: dict[str, list[float]] = {"recommend": [], "rank": []}
    for i, (_, ranking) in enumerate(pairs):
        body = json.loads(ranking["body"])
        history = rec.catalog.rows(body["history"])[0]
        rows = rec.catalog.lookup(body["candidates"])
        calls = {
            "recommend": functools.partial(rec.recommend, history),
            "rank": functools.partial(rec.rank, history, rows),
        }
        for name, run in calls.items():
            began = time.perf_counter()
            run()
            if i >= warmup:
                times[name].append((time.perf_counter() - began) * 1000)
    return {name: figures(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=500)
    parser.add_argument("--history", type=int, default=50)
    args = parser.parse_args()

    from lmrec import registry
    from lmrec.recommend import Recommender

    root = f"file://{tempfile.mkdtemp(prefix='lmrec-rank-bench-')}"
    registry.set_production(root, "lmrec", registry.publish(Path(args.bundle), root, "lmrec"))
    os.environ.update(
        {"LMREC_STORE_URI": root, "LMREC_USER_STORE": "", "LMREC_CACHE_DIR": tempfile.mkdtemp()}
    )
    rec = Recommender.load(args.bundle)
    ids = list(rec.bundle.item_ids)
    rng = np.random.default_rng(0)
    warmup = 50
    pairs = []
    for _ in range(args.requests + warmup):
        history = [str(i) for i in rng.choice(ids, args.history, replace=False)]
        candidates = [str(i) for i in rng.choice(ids, args.candidates, replace=False)]
        pairs.append(
            (
                event("recommendations", {"history": history, "k": 10}),
                event("rankings", {"history": history, "candidates": candidates}),
            )
        )
    spec = importlib.util.spec_from_file_location("bench_api", HANDLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The handler's EMF metrics and logs go to stdout, which carries this script's JSON.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        spec.loader.exec_module(module)
        warm = measure(module, pairs, warmup)
    model_only = measure_model(rec, pairs, warmup)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0)),
            "blas_threads": os.environ["OPENBLAS_NUM_THREADS"],
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "bundle": args.bundle,
        "model_version": rec.version,
        "catalog_items": rec.model.n_items,
        "d": rec.model.d,
        "transitions": rec.transitions is not None,
        "history_length": args.history,
        "candidates": args.candidates,
        "warm": warm,
        "model_only": model_only,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
