"""API benchmark: the Lambda handler driven with API Gateway HTTP API v2 events. Prints JSON.

- warm latency p50/p99 of POST /v1/recommendations (k=10, a 50-item history), in process;
- cold start: a fresh process imports the handler, loads the bundle from an S3 endpoint (a
  moto server on localhost) and answers one request (median of --cold-runs). Every module's
  bytecode is compiled ahead (one discarded run fills a private PYTHONPYCACHEPREFIX), as in
  the layers layers/build.py makes; the run "without bytecode" keeps only the standard
  library's and compiles every other module from source each time, as Lambda does with a
  layer that ships sources only (the runtime's own standard library has its bytecode);
- the same two for benchmarks/torch_handler.py, the same student served with torch;
- the deps layer's unzipped size (layers/build.py) next to torch's installed size.

    .venv/bin/python benchmarks/api_latency.py --bundle runs/bench-quality/games
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
from lmrec.local.stack import LambdaContext, free_port

REPO = Path(__file__).resolve().parents[1]
OURS = REPO / "functions" / "api" / "app.py"
TORCH = REPO / "benchmarks" / "torch_handler.py"

CHILD = r"""
import importlib.util, json, sys, time
t0 = time.perf_counter()
class Ctx:
    function_name = "bench"; function_version = "1"; memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "cold"; log_group_name = "g"; log_stream_name = "s"
    def get_remaining_time_in_millis(self): return 30000
spec = importlib.util.spec_from_file_location("handler_module", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
t1 = time.perf_counter()
reply = module.handler(json.loads(sys.argv[2]), Ctx())
t2 = time.perf_counter()
result = {"status": reply["statusCode"], "import_s": t1 - t0, "first_request_s": t2 - t1}
print("LMREC_RESULT " + json.dumps(result), flush=True)
"""


def api_event(history: list[str], k: int = 10) -> dict:
    event = json.loads((REPO / "events" / "api_post_recommendations.json").read_text())
    event["body"] = json.dumps({"history": history, "k": k})
    return event


def cold_start(handler: Path, event: dict, env: dict, runs: int, bytecode: bool = True) -> dict:
    with tempfile.TemporaryDirectory(prefix="lmrec-pyc-") as pycache:
        return _cold_runs(handler, event, env, runs, bytecode, pycache)


def keep_only_stdlib_bytecode(prefix: Path) -> None:
    """Empty a PYTHONPYCACHEPREFIX tree of everything but the standard library's bytecode."""
    stdlib = prefix / Path(sysconfig.get_paths()["stdlib"]).relative_to("/")
    with tempfile.TemporaryDirectory(prefix="lmrec-stdlib-") as aside:
        if stdlib.is_dir():
            stdlib.rename(Path(aside) / "kept")
        shutil.rmtree(prefix)
        prefix.mkdir()
        if (Path(aside) / "kept").is_dir():
            stdlib.parent.mkdir(parents=True)
            (Path(aside) / "kept").rename(stdlib)
    if not stdlib.is_dir():
        raise SystemExit(f"no standard-library bytecode was written under {prefix}")


def _cold_runs(
    handler: Path, event: dict, env: dict, runs: int, bytecode: bool, pycache: str
) -> dict:
    totals, imports, firsts = [], [], []
    child_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    child_env["PYTHONPYCACHEPREFIX"] = pycache  # empty: nothing compiled yet
    for attempt in range(runs + 1):  # the first run compiles, and is not counted
        if attempt == 1 and not bytecode:
            keep_only_stdlib_bytecode(Path(pycache))
            child_env["PYTHONDONTWRITEBYTECODE"] = "1"
        with tempfile.TemporaryDirectory() as cache:
            began = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(handler), json.dumps(event)],
                env={**child_env, "LMREC_CACHE_DIR": cache},
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=REPO,
            )
            line = ""
            while line is not None and not line.startswith("LMREC_RESULT "):
                line = proc.stdout.readline() or None  # other lines: EMF metrics, logs
            ready = time.perf_counter() - began
            proc.wait()
            if line is None:
                raise SystemExit(f"{handler.name}: the cold process died before answering")
            result = json.loads(line.removeprefix("LMREC_RESULT "))
            if result["status"] != 200:
                raise SystemExit(f"{handler.name}: cold request answered {result['status']}")
            if attempt == 0:
                continue
            totals.append(ready)
            imports.append(result["import_s"])
            firsts.append(result["first_request_s"])
    return {
        "median_s": round(statistics.median(totals), 3),
        "import_and_load_median_s": round(statistics.median(imports), 3),
        "first_request_median_s": round(statistics.median(firsts), 4),
        "runs": runs,
        "bytecode": "compiled ahead" if bytecode else "standard library only",
    }


def warm(handler_path: Path, events: list[dict], name: str) -> dict:
    # The handler's EMF metrics and logs go to stdout, which carries this script's JSON.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        return _warm(handler_path, events, name)


def _warm(handler_path: Path, events: list[dict], name: str) -> dict:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, handler_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for e in events[:50]:
        module.handler(e, LambdaContext())  # warm-up
    times = []
    for e in events:
        began = time.perf_counter()
        reply = module.handler(e, LambdaContext())
        times.append((time.perf_counter() - began) * 1000)
        if reply["statusCode"] != 200:
            raise SystemExit(f"{name}: answered {reply['statusCode']}: {reply.get('body')}")
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
        "requests": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--skip-layer", action="store_true")
    args = parser.parse_args()

    import boto3
    from lmrec import registry
    from lmrec.recommend import Recommender
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LMREC_STORE_URI": "s3://lmrec-bench",
        "LMREC_USER_STORE": "",
        "POWERTOOLS_METRICS_NAMESPACE": "lmrec-bench",
    }
    os.environ.update({k: v for k, v in env.items() if k != "LMREC_CACHE_DIR"})
    boto3.client("s3").create_bucket(Bucket="lmrec-bench")
    pointer = registry.publish(Path(args.bundle), "s3://lmrec-bench", "lmrec")
    registry.set_production("s3://lmrec-bench", "lmrec", pointer)

    rec = Recommender.load(args.bundle)
    rng = np.random.default_rng(0)
    ids = rec.bundle.item_ids
    events = [
        api_event(list(rng.choice(ids, size=50, replace=False))) for _ in range(args.requests)
    ]

    os.environ["LMREC_CACHE_DIR"] = tempfile.mkdtemp()
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "bundle": args.bundle,
        "model_version": rec.version,
        "history_length": 50,
        "k": 10,
        "cold_start": {
            "numpy (lmrec)": cold_start(OURS, events[0], env, args.cold_runs),
            "torch": cold_start(TORCH, events[0], env, args.cold_runs),
            "numpy (lmrec), without bytecode": cold_start(
                OURS, events[0], env, args.cold_runs, bytecode=False
            ),
        },
        "warm": {
            "numpy (lmrec)": warm(OURS, events, "ours"),
            "torch": warm(TORCH, events, "torch"),
        },
    }
    c = result["cold_start"]
    result["cold_start_speedup"] = round(c["torch"]["median_s"] / c["numpy (lmrec)"]["median_s"], 2)
    import torch

    result["torch_installed_bytes"] = sum(
        p.stat().st_size for p in Path(torch.__file__).parent.rglob("*") if p.is_file()
    )
    if not args.skip_layer:
        out = subprocess.run(
            [sys.executable, str(REPO / "layers" / "build.py")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result["layers"] = json.loads(out[out.index("{") :])
    server.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
