"""Serving cost of the live item overlay: POST /v1/recommendations through the Lambda handler
with m items added after the model (m = 0, 1,000, 10,000: the cap) in a DynamoDB item
table on a moto server (its own process, so it does not share this one's GIL), and what a
cold start pays to read and featurise them. Prints JSON.

    PYTHONPATH=layers/core:. nice .venv/bin/python benchmarks/live_items.py --bundle B

B: a bundle with a content part (tests/live_helpers.with_content adds one to any bundle;
--add-content does that here)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _records(m: int, seed: int = 0):
    from lmrec.itemstore import ItemRecord, now_ms

    rng = np.random.default_rng(seed)
    words = ["quantum", "saga", "love", "war", "night", "city", "river", "ghost", "king", "dream"]
    genres = ["Drama", "Comedy", "Action", "Sci-Fi", "Horror", "Romance"]
    stamp = now_ms()
    return [
        ItemRecord(
            f"live-{i}",
            {
                "title": " ".join(rng.choice(words, 4)),
                "genres": "|".join(rng.choice(genres, 2, replace=False)),
                "release_year": int(rng.integers(1990, 2027)),
            },
            True,
            stamp,
            stamp,
        )
        for i in range(m)
    ]


def _instance(store_root: str, table: str, cache: Path):
    import importlib.util

    from lmrec.settings import get_settings

    os.environ.update({"LMREC_STORE_URI": store_root, "LMREC_ITEM_STORE": f"dynamodb://{table}"})
    os.environ["LMREC_CACHE_DIR"] = str(cache)
    get_settings.cache_clear()
    path = REPO / "functions" / "api" / "app.py"
    spec = importlib.util.spec_from_file_location(f"api_{uuid.uuid4().hex[:6]}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _latency(fn, history: list[str], n: int) -> dict:
    from lmrec.local.stack import LambdaContext

    event = json.loads((REPO / "events" / "api_post_recommendations.json").read_text())
    event["body"] = json.dumps({"history": history, "k": 10})
    for _ in range(50):
        fn.handler(event, LambdaContext())
    times = []
    for _ in range(n):
        began = time.perf_counter()
        reply = fn.handler(event, LambdaContext())
        times.append((time.perf_counter() - began) * 1000)
        assert reply["statusCode"] == 200
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
    }


def _run(args, bundle: Path, work: Path, port: int) -> dict:
    import boto3
    from lmrec import aws, itemstore, liveitems, registry
    from lmrec.recommend import Recommender

    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LMREC_AWS_READ_TIMEOUT": "3",
        }
    )
    boto3.setup_default_session()
    aws.reset_clients()
    time.sleep(3)  # the server's start
    root = f"file://{work / 'store'}"
    registry.set_production(root, "lmrec", registry.publish(bundle, root, "lmrec"))
    rec = Recommender.load(bundle)
    history = [rec.catalog.item_ids[i] for i in range(50)]
    out: dict = {"bundle": str(bundle), "n_items": rec.catalog.n_items, "d": rec.model.d}
    for m in [int(s) for s in args.sizes.split(",")]:
        table = f"bench-{m}"
        itemstore.create_table(table)
        records = _records(m)
        itemstore.ItemStore(table).put(records)
        time.sleep(args.settle)  # past the polls' overlap window: the steady state
        began = time.perf_counter()
        everything = itemstore.ItemStore(table).all()
        read_s = time.perf_counter() - began
        began = time.perf_counter()
        liveitems.build(rec, everything.values(), {})
        build_s = time.perf_counter() - began
        fn = _instance(root, table, work / f"cache-{m}")
        row = {"read_all_s": round(read_s, 3), "featurise_and_build_s": round(build_s, 3)}
        out[f"live_{m}"] = row | _latency(fn, history, args.requests)
        print(json.dumps({m: out[f"live_{m}"]}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sizes", default="0,1000,10000")
    parser.add_argument("--add-content", action="store_true")
    parser.add_argument(
        "--settle", type=float, default=16.0, help="seconds between the writes and the timing"
    )
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # powertools' per-request lines are not the subject
    import subprocess
    import sys

    from lmrec.local.stack import free_port

    work = Path(tempfile.mkdtemp(prefix="live-bench-"))
    bundle = Path(args.bundle)
    if args.add_content:
        from tests.live_helpers import with_content

        bundle = with_content(bundle, work / "bundle", None)
    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = _run(args, bundle, work, port)
    finally:  # a failed run must not leave the server behind
        moto.terminate()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
