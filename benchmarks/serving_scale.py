"""Serving at three catalog sizes: bundle size, load time, memory, cold start through the
Lambda handler with the bundle fetched from a local S3 endpoint (moto server), recommend and
similar-items latency on one thread, and the item index's recall against exact search.
Prints one JSON object per size.

    nice -n 10 .venv/bin/python benchmarks/serving_scale.py --sizes S M L
    nice -n 10 .venv/bin/python benchmarks/serving_scale.py --sizes L --content both \
        --live 0,1000 --warm-requests 300

Bundles are written by training/bundle_writer.py from synthetic data: Zipf item popularity,
users drifting along item topics (mean 15 interactions), a catalog with titles, a price and
1-2 of 200 categories, and the default student's shape (d=48, 1 block, max_len 50): its item
table drawn around topic centres with norms that grow with popularity (the shape trained
tables take; a Gaussian table has no structure for any index to use), its encoder set so the
user vector is the newest item plus the history's mean (see history_encoder).

Cold start: a fresh process per run (--cold-runs, default 5; median and min reported), from
the process's start (the kernel's clock) to the first answer, bundle fetched from moto S3
into an empty cache; then --warm-requests more through the handler (wall and process CPU).

The content part (--content on, or both: without and with, measured side by side, the cold
starts in alternating rounds): the student built as training builds one with the catalog
(training.item_content, default spec inference and 2**15 buckets), its id rows set so that
id + content equals the same item table, so the bundles differ by content.weight and the
manifest's "content" / "new_items" alone. --live 0,1000: cold starts with that many items
added after the model in a DynamoDB item table on the moto server (0: no item store); the
first request reads and featurises them (timed apart again as "live_split").

Bundles carry transitions (lmrec.transitions: the job's table of pairs of at least 2 users)
at weight 2 unless --transitions-weight 0; recommend is then also timed with the table set
aside, on the same bundle and requests.

Latency: single thread (OPENBLAS/OMP/MKL threads = 1), in a fresh process per size, 500
histories of the data's users, k=10, seen items excluded, explanations on; wall and on-CPU
milliseconds (the machine is shared: wall time includes other processes' turns).

The code under test is whichever lmrec/training PYTHONPATH names, so the same command on an
older checkout measures the code before a change on bundles from the same data and model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()  # a cold start is timed from here (plus the interpreter's start)

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SIZES = {"S": (10_000, 4_800), "M": (100_000, 76_000), "L": (1_000_000, 671_000)}
N_CATEGORIES = 200
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    return f"{os.cpu_count()}-core {cpu}, {mem:.0f} GB, no GPU, Python {platform.python_version()}"


def process_age_s() -> float:
    """Seconds since this process started (the kernel's start time: interpreter start
    included, which T0 misses), at the clock tick's resolution (10 ms)."""
    ticks = os.sysconf("SC_CLK_TCK")
    started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def rss_mb() -> dict:
    status = dict(
        ln.split(":", 1) for ln in Path("/proc/self/status").read_text().splitlines() if ":" in ln
    )
    return {
        k: round(int(status[v].split()[0]) / 1024, 1)
        for k, v in (("rss_mb", "VmRSS"), ("peak_rss_mb", "VmHWM"))
    }


# -- data and bundles -----------------------------------------------------------------------
def synthetic(n_users: int, n_items: int, seed: int = 0):
    from training.data import Interactions

    rng = np.random.default_rng(seed)
    n_topics = max(8, n_items // 300)
    topic_of_item = rng.integers(0, n_topics, n_items)
    by_topic = np.argsort(topic_of_item, kind="stable")
    topic_start = np.searchsorted(topic_of_item[by_topic], np.arange(n_topics + 1))
    lengths = np.clip(rng.geometric(1 / 14, n_users) + 1, 2, 500)
    offsets = np.zeros(n_users + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    user_of = np.repeat(np.arange(n_users), lengths)
    # Each user drifts: their topic moves by +1 now and then along their history.
    drift = (rng.random(total) < 0.1).astype(np.int64)
    step = np.cumsum(drift) - np.repeat(
        np.cumsum(drift)[offsets[:-1]] - drift[offsets[:-1]], lengths
    )
    topic = (rng.integers(0, n_topics, n_users)[user_of] + step) % n_topics
    size = topic_start[topic + 1] - topic_start[topic]
    rank = np.minimum(rng.zipf(1.2, total) - 1, np.maximum(size - 1, 0))
    items = by_topic[topic_start[topic] + rank] + 1
    wander = rng.random(total) < 0.2  # the rest: anywhere, by global popularity
    items[wander] = np.minimum(rng.zipf(1.1, int(wander.sum())), n_items)
    item_ids = np.asarray([f"B{h:09X}" for h in rng.permutation(n_items * 7)[:n_items]], dtype=str)
    data = Interactions(
        user_ids=np.asarray([f"user-{u:07d}" for u in range(n_users)], dtype=str),
        item_ids=item_ids,
        offsets=offsets,
        items=items.astype(np.int64),
        timestamps=np.arange(total, dtype=np.float64),
        fingerprint=f"sha256:{seed:064x}",
        stats={"read_at": "synthetic"},
    )
    return data, topic_of_item


def catalog(data, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed + 1)
    n = data.n_items
    first = rng.integers(0, N_CATEGORIES, n)
    second = rng.integers(0, N_CATEGORIES, n)
    genres = [
        f"cat{a:03d}|cat{b:03d}" if rng_b else f"cat{a:03d}"
        for a, b, rng_b in zip(first, second, rng.random(n) < 0.5, strict=True)
    ]
    return pd.DataFrame(
        {
            "title": [f"Product {i} deluxe edition" for i in range(n)],
            "price": np.round(rng.uniform(1, 200, n), 2),
            "category": genres,
        },
        index=pd.Index(data.item_ids, name="item_id"),
    )


def item_table(topic_of_item: np.ndarray, popularity: np.ndarray, d: int, seed: int = 0):
    """Items around topic centres (noise at half the centres' scale), norms growing with
    popularity."""
    rng = np.random.default_rng(seed + 2)
    centres = rng.standard_normal((int(topic_of_item.max()) + 1, d))
    norms = 0.5 + 0.15 * np.log1p(popularity[1:])
    noise = 0.5 * rng.standard_normal((len(topic_of_item), d))
    table = (centres[topic_of_item] + noise) / np.sqrt(d)
    return np.vstack([np.zeros((1, d)), table * norms[:, None]]).astype(np.float32)


def history_encoder(student) -> None:
    """Weights with which the user vector is the newest item plus the mean of the history
    (uniform attention, identity values, no FFN): like a trained SASRec's, it points where
    the user's items are. Random weights would point anywhere, which no trained model does
    and which would measure an index on queries it never meets."""
    import torch

    d = student.cfg.d_model
    with torch.no_grad():
        student.pos_emb.weight.zero_()
        for block in student.blocks:
            block.attn.qkv.weight.zero_()
            block.attn.qkv.bias.zero_()
            block.attn.qkv.weight[2 * d :] = torch.eye(d)
            block.attn.proj.weight.copy_(torch.eye(d))
            block.attn.proj.bias.zero_()
            block.ffn[2].weight.zero_()
            block.ffn[2].bias.zero_()


def with_content(data, student_cfg, table: np.ndarray):
    """A student that reads the catalog, as training builds one (training.item_content with
    the default DataConfig: the spec inferred from the columns, 2**15 buckets), whose id rows
    are set so that id + content = `table`: known items serve exactly the vectors of the
    bundle without content, and the two bundles differ only by the content part."""
    import torch

    from training.config import DataConfig
    from training.item_content import item_content
    from training.model import SASRec

    data.content = item_content(data, DataConfig())
    student = SASRec(student_cfg, data.content)
    f = data.content.features
    with torch.no_grad():
        part = student.content(
            torch.from_numpy(f.indices),
            torch.from_numpy(f.offsets[:-1]),
            per_sample_weights=torch.from_numpy(f.weights),
        )
        student.item_emb.weight.copy_(torch.from_numpy(table) - part)
    return student


def build(
    size: str, out: Path, dtype: str, transitions_weight: float = 2.0, content: bool = False
) -> dict:
    import torch

    from training import hybrid
    from training.bundle_writer import write_bundle
    from training.model import ModelConfig, SASRec
    from training.split import leave_one_out

    n_users, n_items = SIZES[size]
    began = time.perf_counter()
    data, topic = synthetic(n_users, n_items)
    data.catalog = catalog(data)
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=n_items, d_model=48, n_blocks=1, n_heads=1, max_len=50)
    student = SASRec(cfg)
    popularity = np.bincount(data.items, minlength=n_items + 1)
    table = item_table(topic, popularity, 48)
    with torch.no_grad():
        student.item_emb.weight.copy_(torch.from_numpy(table))
    featurised = None
    if content:  # the same encoder weights (seeded), the same served item vectors
        began_content = time.perf_counter()
        student_c = with_content(data, cfg, table)
        featurised = round(time.perf_counter() - began_content, 1)
        student_c.load_state_dict(
            {k: v for k, v in student.state_dict().items() if k != "item_emb.weight"},
            strict=False,
        )
        student = student_c
    history_encoder(student)
    student.eval()
    generated = time.perf_counter() - began
    out.mkdir(parents=True, exist_ok=True)
    table = None
    if transitions_weight:  # the job's table (pairs of >= 2 users), at a typical weight
        table = hybrid.build(leave_one_out(data), 2, 50, transitions_weight)
    # A trained job's summary names the new-item offset it chose (training/new_items.py)
    doc = {"metrics": {}, "config": {"size": size}, "summary": {"new_items": {"offset": 0.0}}}
    began = time.perf_counter()
    manifest = write_bundle(
        out, student, data, doc, dtype, category_column="category", transitions=table
    )
    written = time.perf_counter() - began
    rng = np.random.default_rng(7)
    users = rng.choice(n_users, 500, replace=False)
    hist = [data.sequence(int(u))[-200:] for u in users]
    np.savez(out.parent / f"{out.name}-requests.npz", *[h.astype(np.int64) for h in hist])
    return {
        "content": data.content.describe() if content else None,
        "content_featurise_seconds": featurised,
        "generate_seconds": round(generated, 1),
        "write_seconds": round(written, 1),
        "interactions": len(data.items),
        "item_index": manifest["model"].get("item_index"),
    }


# -- measurements in a fresh process --------------------------------------------------------
def percentiles(ms: tuple[list[float], list[float]]) -> dict:
    a, c = np.asarray(ms[0]), np.asarray(ms[1])
    return {
        "cpu_p50_ms": round(float(np.percentile(c, 50)), 3),
        "cpu_p99_ms": round(float(np.percentile(c, 99)), 3),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
    }


def timed(fn, args, clock=time.thread_time) -> tuple[list[float], list[float]]:
    """Wall and on-CPU milliseconds per call. The machine is shared: wall time includes
    the time the scheduler gave another process; the thread's CPU time does not. (The
    handler runs a route on a worker thread: time it with the process's clock.)"""
    wall, cpu = [], []
    for a in args:
        began, began_cpu = time.perf_counter(), clock()
        fn(a)
        wall.append((time.perf_counter() - began) * 1000)
        cpu.append((clock() - began_cpu) * 1000)
    return wall, cpu


def child_latency(bundle_dir: str) -> dict:
    from lmrec.recommend import Filters, Recommender

    began, began_cpu = time.perf_counter(), time.process_time()
    rec = Recommender.load(bundle_dir)
    load_s, load_cpu = time.perf_counter() - began, time.process_time() - began_cpu
    memory = rss_mb()
    req = np.load(Path(bundle_dir).parent / f"{Path(bundle_dir).name}-requests.npz")
    hist = [req[k] for k in req.files]
    ids = rec.catalog.item_ids
    n = len(ids)
    rng = np.random.default_rng(3)
    probe_items = [ids[int(i)] for i in rng.integers(0, n, 500)]
    excluded = [ids[int(i)] for i in rng.integers(0, n, 20)]
    for h in hist[:30]:  # warm caches and lazy imports
        rec.recommend(h, Filters(k=10))
    plain = timed(lambda h: rec.recommend(h, Filters(k=10)), hist)
    filtered = timed(
        lambda h: rec.recommend(
            h,
            Filters(k=10, exclude_items=excluded, exclude_categories=["cat000", "cat001"]),
        ),
        hist,
    )
    narrow = timed(lambda h: rec.recommend(h, Filters(k=10, include_categories=["cat007"])), hist)
    cold = timed(lambda h: rec.recommend(np.empty(0, np.int64), Filters(k=10)), hist[:200])
    by_share = {}  # include filters of 2, 10, 20 and 80 of the 200 categories
    for n_cats in (2, 10, 20, 80):
        f = Filters(k=10, include_categories=[f"cat{i:03d}" for i in range(n_cats)])
        by_share[f"{n_cats}_categories"] = percentiles(
            timed(lambda h, f=f: rec.recommend(h, f), hist[:200])
        )
    similar = timed(lambda i: rec.similar(i, 10), probe_items)
    without = None
    if rec.transitions is not None:  # the same requests on the same bundle, model alone
        table, rec.transitions = rec.transitions, None
        without = percentiles(timed(lambda h: rec.recommend(h, Filters(k=10)), hist))
        rec.transitions = table
    out = {
        "load_seconds": round(load_s, 3),
        "load_cpu_seconds": round(load_cpu, 3),
        **memory,
        "recommend": percentiles(plain),
        "recommend_filtered": percentiles(filtered),
        "recommend_one_category": percentiles(narrow),
        "recommend_no_history": percentiles(cold),
        "recommend_include_categories": by_share,
        "similar": percentiles(similar),
        "recommend_without_transitions": without,
    }
    if getattr(rec, "index", None) is not None:
        out["ann"] = recall(rec, hist[:200], probe_items[:200])
    return out


def recall(rec, hist, items) -> dict:
    from lmrec.recommend import Filters

    plain = Filters(k=10)
    filtered = Filters(k=10, exclude_categories=["cat000", "cat001"])

    def top10(filters):  # every history's top-10 rows under these filters
        return [[r.row for r in rec.recommend(h, filters).items] for h in hist]

    approx, approx_f = top10(plain), top10(filtered)
    approx_s = [[r.row for r in rec.similar(i, 10)] for i in items]
    index, rec.index = rec.index, None  # no index: the exact answers over the whole table
    exact, exact_f = top10(plain), top10(filtered)
    exact_s = [[r.row for r in rec.similar(i, 10)] for i in items]
    exact_ms = timed(lambda h: rec.recommend(h, plain), hist)
    rec.index = index

    def mean_recall(a, b):
        return round(
            float(
                np.mean([len(set(x) & set(y)) / max(1, len(y)) for x, y in zip(a, b, strict=True)])
            ),
            4,
        )

    return {
        "n_lists": index.n_lists,
        "n_probe": index.n_probe,
        "n_probe_similar": index.n_probe_similar,
        "recall@10_recommend": mean_recall(approx, exact),
        "recall@10_recommend_filtered": mean_recall(approx_f, exact_f),
        "recall@10_similar": mean_recall(approx_s, exact_s),
        "protocol": f"{len(hist)} users' histories / {len(items)} items: top-10 against "
        "the exact top-10 over the whole catalog",
        "exact_recommend": percentiles(exact_ms),
    }


def child_cold(repo: str, history: list[str], requests: int = 0) -> dict:
    """From process start: import the Lambda module (which fetches and loads the bundle) and
    answer one request through its handler (with an item store set, the first request also
    reads and featurises every live item). Then, warm, `requests` more of the same request
    through the handler: wall and CPU milliseconds of the whole invocation."""
    import importlib.util
    import resource

    class Context:  # what the handler reads of Lambda's context object
        function_name, memory_limit_in_mb, aws_request_id = "lmrec-bench", 1024, "bench"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:lmrec-bench"
        log_group_name, log_stream_name = "/aws/lambda/lmrec-bench", "bench"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 10_000

    spec = importlib.util.spec_from_file_location("api_app", Path(repo) / "functions/api/app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    imported = time.perf_counter()
    event = json.loads((Path(repo) / "events/api_post_recommendations_history.json").read_text())
    event["body"] = json.dumps({"history": history, "k": 10})
    event["isBase64Encoded"] = False
    reply = module.handler(event, Context())
    answered, age = time.perf_counter(), process_age_s()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "imported_at_s": round(imported - T0, 3),
        "answered_at_s": round(answered - T0, 3),
        "first_request_s": round(answered - imported, 3),
        "cold_start_s": round(age, 2),  # from the process's start to the first answer
        "status": reply["statusCode"],
        "live_items_in_reply": sum(
            1
            for r in json.loads(reply["body"]).get("items", [])
            if str(r.get("item_id")).startswith("live-")
        )
        if reply["statusCode"] == 200
        else None,
        **rss_mb(),
    }
    if os.environ.get("LMREC_ITEM_STORE"):
        out["live_split"] = live_split(
            os.environ["LMREC_ITEM_STORE"], os.environ["LMREC_CACHE_DIR"]
        )
    if requests:
        logging.disable(logging.WARNING)  # powertools' per-request lines are not the subject
        ms = timed(lambda _: module.handler(event, Context()), range(requests), time.process_time)
        out["warm_handler"] = percentiles(ms) | {"requests": requests}
        out["after_warm"] = rss_mb()
    return out


def live_split(items_uri: str, cache: str) -> dict:
    """Where a cold start's first request spends its live-item time, each part again on its
    own (the OS caches warm now): reading every record, then featurising and building the
    overlay (lmrec.liveitems.build with an empty vector cache, as at a cold start)."""
    from lmrec import itemstore, liveitems
    from lmrec.recommend import Recommender

    manifest = next(Path(cache).rglob("manifest.json"))
    rec = Recommender.load(manifest.parent)
    began = time.perf_counter()
    records = itemstore.open_item_store(items_uri).all()
    read = time.perf_counter() - began
    began, began_cpu = time.perf_counter(), time.process_time()
    overlay = liveitems.build(rec, records.values(), {})
    return {
        "records": len(records),
        "read_all_s": round(read, 3),
        "featurise_and_build_s": round(time.perf_counter() - began, 3),
        "featurise_and_build_cpu_s": round(time.process_time() - began_cpu, 3),
        "scored": overlay.scored,
    }


def child_fetch(uri: str, cache: str) -> dict:
    """The download alone (the bundle's serving files from S3 into the cache directory)."""
    import resource

    from lmrec import bundle

    began = time.perf_counter()
    bundle.fetch(uri, cache)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "fetch_seconds": round(time.perf_counter() - began, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
    }


def run_child(args: list[str], env: dict) -> dict:
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **ONE_THREAD, **env},
        timeout=900,
    )
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_seconds"] = round(wall, 3)
    return out


def live_records(m: int, seed: int = 0) -> list:
    """m items added after the model, with the catalog's columns (title, price, category)."""
    from lmrec.itemstore import ItemRecord, now_ms

    rng = np.random.default_rng(seed + 5)
    stamp = now_ms()
    return [
        ItemRecord(
            f"live-{i:06d}",
            {
                "title": f"New gadget {i} mark {int(rng.integers(1, 9))}",
                "price": round(float(rng.uniform(1, 200)), 2),
                "category": f"cat{int(rng.integers(0, N_CATEGORIES)):03d}",
            },
            True,
            stamp,
            stamp,
        )
        for i in range(m)
    ]


def item_store(name: str, m: int) -> str:
    """A DynamoDB item table (on the moto server) holding m live items; its URI."""
    from lmrec import itemstore

    itemstore.create_table(name)
    itemstore.ItemStore(name).put(live_records(m))
    return f"dynamodb://{name}"


def publish(bundle_dir: Path) -> tuple[str, object]:
    """The bundle published as production in a bucket of its own: (store URI, pointer)."""
    import boto3
    from lmrec import registry, store

    bucket = f"bench-{bundle_dir.name.lower()}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    store._S3 = None
    pointer = registry.publish(bundle_dir, f"s3://{bucket}", "lmrec")
    registry.set_production(f"s3://{bucket}", "lmrec", pointer)
    return f"s3://{bucket}", pointer


def cold_run(store_uri: str, repo: Path, history: list[str], items_uri: str, requests: int):
    """One cold start (a fresh process, an empty cache), then `requests` warm ones."""
    cache = tempfile.mkdtemp(prefix="lmrec-cold-")
    env = {
        "LMREC_STORE_URI": store_uri,
        "LMREC_CACHE_DIR": cache,
        "LMREC_USER_STORE": "",
        "LMREC_ITEM_STORE": items_uri,
        # moto's DynamoDB answers a 1,000-record read in ~1 s on these shared cores (the
        # API's default read timeout); a timed-out poll would leave the view stale and make
        # every request wait for the next (benchmarks/live_items.py sets the same)
        "LMREC_AWS_READ_TIMEOUT": "4",
        "LMREC_INIT_LOAD_SECONDS": "9",
        "LMREC_AUTH": "none",
    }
    args = ["--child", "cold", str(repo), json.dumps(history), str(requests)]
    run = run_child(args, env) | {"load_before": round(os.getloadavg()[0], 2)}
    shutil.rmtree(cache, ignore_errors=True)
    return run


def fetch_only(pointer) -> dict:
    cache = tempfile.mkdtemp(prefix="lmrec-fetch-")
    fetch = run_child(["--child", "fetch", pointer.bundle_uri, cache], {})
    shutil.rmtree(cache, ignore_errors=True)
    return fetch


def summarise(runs: list[dict]) -> dict:
    """Medians over the runs that answered (the machine is shared: one run can be unlucky)."""
    ok = [r for r in runs if r.get("status") == 200]

    def median(key: str, block: str | None = None):
        values = [(r[block] if block else r)[key] for r in ok if not block or block in r]
        return round(float(np.median(values)), 3) if values else None

    return {
        "answered": f"{len(ok)} of {len(runs)}",
        "cold_start_seconds_median": median("cold_start_s"),
        "cold_start_seconds_min": min((r["cold_start_s"] for r in ok), default=None),
        "process_wall_seconds_median": median("process_wall_seconds"),
        "first_request_seconds_median": median("first_request_s"),
        "cpu_seconds_median": median("cpu_seconds"),
        "peak_rss_mb_max": max((r.get("peak_rss_mb", 0) for r in runs), default=None),
        "warm_handler_p50_ms_median": median("p50_ms", "warm_handler"),
        "warm_handler_p99_ms_median": median("p99_ms", "warm_handler"),
        "warm_handler_cpu_p50_ms_median": median("cpu_p50_ms", "warm_handler"),
        "warm_handler_cpu_p99_ms_median": median("cpu_p99_ms", "warm_handler"),
        "load_median": median("load_before"),
        "runs": runs,
    }


def cold_start(bundle_dir: Path, repo: Path, history: list[str], n_runs: int) -> dict:
    store_uri, pointer = publish(bundle_dir)
    runs = [cold_run(store_uri, repo, history, "", 0) for _ in range(n_runs)]
    return summarise(runs) | {"fetch_only": fetch_only(pointer)}


def counts(text: str) -> list[int]:
    """ "0,1000" -> [0, 1000]; argparse turns the error into one line and exit code 2."""
    try:
        out = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not comma-separated counts") from None
    if any(m < 0 or m > 10_000 for m in out):  # lmrec.liveitems.MAX_LIVE
        raise argparse.ArgumentTypeError(f"{text!r}: counts must be 0..10000")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["S", "M", "L"], choices=list(SIZES))
    parser.add_argument("--dtype", default="int8", choices=["float32", "float16", "int8"])
    parser.add_argument("--cold-runs", type=int, default=5, help="cold starts per size")
    parser.add_argument(
        "--transitions-weight", type=float, default=2.0, help="0: bundles without transitions"
    )
    parser.add_argument("--workdir", default="", help="where bundles go (default: a temp dir)")
    parser.add_argument(
        "--content",
        default="off",
        choices=["off", "on", "both"],
        help="bundles with the content part; both: without and with, measured side by side",
    )
    parser.add_argument(
        "--live",
        default="0",
        type=counts,
        help="live item counts for the cold starts, comma separated (0: no item store)",
    )
    parser.add_argument(
        "--warm-requests", type=int, default=0, help="handler requests timed after each cold start"
    )
    parser.add_argument("--reuse", action="store_true", help="measure bundles in --workdir")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "latency":
            result = child_latency(rest[0])
        elif kind == "fetch":
            result = child_fetch(rest[0], rest[1])
        else:
            result = child_cold(rest[0], json.loads(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return
    import training

    repo = Path(training.__file__).resolve().parents[1]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="serving-scale-"))
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:  # a free port (no import from the code under test)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    creds = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    os.environ.update(creds)
    try:
        for size in args.sizes:
            for record in measure_size(size, args, work, repo):
                print(json.dumps(record), flush=True)
    finally:
        server.stop()


def measure_size(size: str, args, work: Path, repo: Path) -> list[dict]:
    """Each variant's bundle built and measured; the cold starts in rounds that take every
    (variant, live count) once, so a burst of load from other processes hits them alike."""
    from lmrec.bundle import load

    variants = {"off": [False], "on": [True], "both": [False, True]}[args.content]
    live = args.live
    stores = {m: item_store(f"live-{size.lower()}-{m}", m) if m else "" for m in live}
    written = time.monotonic()
    records, targets = [], []
    for content in variants:
        out = work / f"{size}-{args.dtype}{'-content' if content else ''}"
        record = {
            "size": size,
            "users": SIZES[size][0],
            "items": SIZES[size][1],
            "item_table_dtype": args.dtype,
            "content_part": content,
            "code": str(repo),
            "machine": machine(),
        }
        if args.reuse and (out / "manifest.json").exists():
            record["reused"] = str(out)  # built by an earlier run of the same command
        else:
            record.update(build(size, out, args.dtype, args.transitions_weight, content))
        manifest = json.loads((out / "manifest.json").read_text())
        record["bundle_files_mb"] = {
            name: round(e["size"] / 2**20, 2) for name, e in manifest["files"].items()
        }
        record["bundle_mb"] = round(sum(e["size"] for e in manifest["files"].values()) / 2**20, 1)
        record["load_before_latency"] = round(os.getloadavg()[0], 2)
        record["serving"] = run_child(["--child", "latency", str(out)], {})
        req = np.load(work / f"{out.name}-requests.npz")
        ids = load(out).item_ids
        history = [ids[int(r) - 1] for r in req[req.files[0]][-10:]]
        store_uri, pointer = publish(out)
        record["fetch_only"] = fetch_only(pointer)
        records.append(record)
        targets.append((store_uri, history))
    # Past the polls' overlap window (lmrec.itemstore.OVERLAP_MS) after the writes: a poll
    # within it re-reads every change of the last 15 s (1,000 records), once per 2 s; the
    # steady state is measured, as benchmarks/live_items.py does.
    time.sleep(max(0.0, written + 16.0 - time.monotonic()))
    runs: dict = {(v, m): [] for v in range(len(variants)) for m in live}
    for _ in range(args.cold_runs):
        for v, (store_uri, history) in enumerate(targets):
            for m in live:
                runs[v, m].append(cold_run(store_uri, repo, history, stores[m], args.warm_requests))
    for v, record in enumerate(records):
        record["cold_start"] = {f"live_{m}": summarise(runs[v, m]) for m in live}
    return records


if __name__ == "__main__":
    main()
