"""User-store figures: the history sync's throughput (first sync: every user; then a sync
where 1% of users changed) and the latency of the one Query a recommendation makes, on
DynamoDB (a moto server on localhost: the protocol and botocore's costs, not AWS's network)
and on the embedded SQLite store. Prints JSON.

moto's Query walks every item of the table (moto/dynamodb/models/table.py, `for item in
self.all_items()`), so on moto its latency grows with the table; DynamoDB reads one
partition. The Query figure on the large table is therefore taken over a few queries only,
and the per-query cost of the client and protocol is measured again on a 1,000-user table.

    .venv/bin/python benchmarks/userstore.py --users 100000 --per-user 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic(n_users: int, per_user: int, n_items: int, seed: int = 0):
    from training.data import Interactions

    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, per_user // 2), per_user * 3 // 2 + 1, size=n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(1, n_items + 1, size=int(offsets[-1])).astype(np.int64)
    return Interactions(
        user_ids=np.asarray([f"user-{u:07d}" for u in range(n_users)]),
        item_ids=np.asarray([f"item-{i:06d}" for i in range(n_items)]),
        offsets=offsets,
        items=items,
        timestamps=np.arange(len(items), dtype=np.float64),
        fingerprint=f"synthetic-{seed}",
    )


def changed_copy(data, fraction: float, seed: int = 1):
    """The same data with `fraction` of the users given one newer item."""
    rng = np.random.default_rng(seed)
    items = data.items.copy()
    picked = rng.choice(data.n_users, size=max(1, int(data.n_users * fraction)), replace=False)
    last = data.offsets[picked + 1] - 1
    items[last] = items[last] % data.n_items + 1
    from dataclasses import replace

    return replace(data, items=items, fingerprint="changed"), len(picked)


def query_latency(store, users: list[str], limit: int) -> dict:
    times = []
    for u in users:
        began = time.perf_counter()
        store.recent(u, limit)
        times.append((time.perf_counter() - began) * 1000)
    return {
        "queries": len(times),
        "p50_ms": round(float(np.median(times)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
    }


def run_store(name: str, store, data, state: str, args, queries: int) -> dict:
    from lmrec.events import Event

    from training import histories

    out: dict = {"store": name}
    first = histories.sync(data, store, state, args.history_length)
    items = int(np.minimum(np.diff(data.offsets), args.history_length).sum())
    out["first_sync"] = {
        **first,
        "items_written": items,
        "users_per_second": round(first["written"] / first["seconds"], 1),
        "items_per_second": round(items / first["seconds"], 1),
    }
    again = histories.sync(data, store, state, args.history_length)
    out["unchanged_sync"] = {"written": again["written"], "seconds": again["seconds"]}
    changed, n = changed_copy(data, 0.01)
    third = histories.sync(changed, store, state, args.history_length)
    out["one_percent_changed"] = {"changed": n, **third}
    rng = np.random.default_rng(2)
    users = [str(data.user_ids[u]) for u in rng.choice(data.n_users, size=queries)]
    for u in users[:200]:  # some users with events too, so the Query returns both kinds
        store.put_events([Event(u, f"item-{j:06d}", 1_700_000_000 + j) for j in range(10)], 86400)
    out["query"] = query_latency(store, users, 50)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--per-user", type=int, default=20)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--history-length", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--moto-queries", type=int, default=30, help="on the large moto table")
    parser.add_argument("--stores", default="sqlite,dynamodb")
    args = parser.parse_args()
    from lmrec.userstore import open_user_store

    data = synthetic(args.users, args.per_user, args.items)
    results = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or ''}",
        "users": args.users,
        "interactions": len(data.items),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        if "sqlite" in args.stores:
            store = open_user_store(f"sqlite://{Path(tmp) / 'users.db'}")
            results["runs"].append(
                run_store("sqlite", store, data, f"file://{tmp}/sqlite.npz", args, args.queries)
            )
        if "dynamodb" in args.stores:
            from lmrec.local.stack import create_user_store_table, free_port
            from moto.server import ThreadedMotoServer

            port = free_port()
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            os.environ.update(
                AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                AWS_ACCESS_KEY_ID="x",
                AWS_SECRET_ACCESS_KEY="x",
                AWS_DEFAULT_REGION="us-east-1",
            )
            try:
                create_user_store_table("bench-users")
                store = open_user_store("dynamodb://bench-users")
                results["runs"].append(
                    run_store(
                        "dynamodb (moto server)",
                        store,
                        data,
                        f"file://{tmp}/d.npz",
                        args,
                        args.moto_queries,
                    )
                )
                create_user_store_table("bench-small")
                small_store = open_user_store("dynamodb://bench-small")
                small = synthetic(1000, args.per_user, args.items, seed=5)
                run = run_store(
                    "dynamodb (moto server), 1,000 users",
                    small_store,
                    small,
                    f"file://{tmp}/s.npz",
                    args,
                    args.queries,
                )
                results["runs"].append({"store": run["store"], "query": run["query"]})
            finally:
                server.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
