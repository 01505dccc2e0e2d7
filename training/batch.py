"""Batch recommendations (Personalize's "batch inference"): top-k for a list of users, or for
every known user, written as Parquet. Several instances split the work: each takes the users
of its shard (explicit, or its host's place in resourceconfig.json), or SageMaker Processing's
ShardedByS3Key hands each instance its own user-list files.

    python -m training batch --bundle s3://b/models/lmrec/<version> --output s3://b/batch/ \
        [--data s3://b/data/interactions/] [--users users.csv | all] [--k 10] \
        [--shard-index 0 --shard-count 1]

The bundle holds no users: histories come from the interaction data (--data; "all" = every
user in it), or else from the user store (LMREC_USER_STORE) for a --users list.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from lmrec import store
from lmrec.recommend import Filters, Recommender

from training.data import DataError, data_files, read_ids, read_table

log = logging.getLogger(__name__)
PROCESSING_RESOURCE_CONFIG = Path("/opt/ml/config/resourceconfig.json")


def shard_from_resource_config(path: Path = PROCESSING_RESOURCE_CONFIG) -> tuple[int, int]:
    if not path.exists():
        return 0, 1
    try:
        cfg = json.loads(path.read_text())
        hosts = cfg.get("hosts") or [cfg.get("current_host")]
        return hosts.index(cfg.get("current_host", hosts[0])), len(hosts)
    except (ValueError, AttributeError, TypeError) as exc:
        raise ValueError(f"{path}: cannot tell this host's shard: {exc}") from None


def read_users(uri: str) -> list[str]:
    users: list[str] = []
    for f in data_files(uri):
        df = read_table(f)
        if "user_id" not in df.columns:
            raise DataError(
                f"{f}: missing column 'user_id'; found {', '.join(map(repr, df.columns))}"
            )
        users.extend(read_ids(df, "user_id", f).tolist())  # as training reads ids: 12.0 is "12"
    return users


class DataHistories:
    """Histories read from the interaction data as the history sync writes them."""

    def __init__(self, rec: Recommender, data_uri: str):
        from training.config import DataConfig
        from training.data import load_interactions
        from training.histories import DEFAULT_HISTORY_LENGTH, windows

        data = load_interactions(data_uri, DataConfig(min_interactions=0, min_users=0))
        self.users = data.user_ids.tolist()
        self.row_of = {u: i for i, u in enumerate(self.users)}  # batch is offline: a dict is fine
        self.start, self.end = windows(data, DEFAULT_HISTORY_LENGTH)
        # data item codes -> the model's rows (0 for items the model does not know)
        rows, unknown = rec.catalog.rows(data.item_ids.tolist())
        known = ~np.isin(data.item_ids, np.asarray(unknown, dtype=str))
        self.to_model = np.zeros(data.n_items + 1, dtype=np.int64)
        self.to_model[1:][known] = rows
        self.items = data.items

    def __call__(self, user: str) -> np.ndarray:
        row = self.row_of.get(user)
        if row is None:
            return np.empty(0, np.int64)
        mapped = self.to_model[self.items[self.start[row] : self.end[row]]]
        return mapped[mapped > 0]


def _history_source(rec: Recommender, data_uri: str | None):
    if data_uri is not None:
        return DataHistories(rec, data_uri)
    import os

    from lmrec.userstore import open_user_store

    uri = os.environ.get("LMREC_USER_STORE", "")
    users = open_user_store(uri) if uri else None

    def from_store(user: str) -> np.ndarray:
        if users is None:
            return np.empty(0, np.int64)
        return rec.catalog.rows(users.recent(user, 0).history)[0]

    return from_store


def run_batch(
    bundle_uri: str,
    output: str,
    users_uri: str = "all",
    k: int = 10,
    shard_index: int = 0,
    shard_count: int = 1,
    batch_size: int = 512,
    cache_dir: str | None = None,
    data_uri: str | None = None,
) -> dict:
    if shard_count < 1:
        raise DataError(f"shard count must be at least 1, got {shard_count}")
    if not 0 <= shard_index < shard_count:
        raise DataError(f"shard index {shard_index} is outside 0..{shard_count - 1}")
    began = time.perf_counter()
    rec = Recommender.load(bundle_uri, cache_dir)
    history_of = _history_source(rec, data_uri)
    if users_uri == "all":
        if data_uri is None:
            raise DataError("--users all needs --data (the bundle holds no users)")
        users = history_of.users
    else:
        users = read_users(users_uri)
    mine = users[shard_index::shard_count]
    cols: dict[str, list] = {"user_id": [], "rank": [], "item_id": [], "score": [], "strategy": []}
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        histories = [history_of(u) for u in chunk]
        # seen items excluded as the model's data taught (off when training kept repeats)
        f = Filters(k=k, exclude_seen=rec.default_exclude_seen, explain=False)
        results = rec.recommend_many(histories, [f] * len(chunk))
        for user, result in zip(chunk, results, strict=True):
            for rank, item in enumerate(result.items, start=1):
                cols["user_id"].append(user)
                cols["rank"].append(rank)
                cols["item_id"].append(item.item_id)
                cols["score"].append(item.score)
                cols["strategy"].append(result.strategy)
    table = pa.table(
        {
            "user_id": pa.array(cols["user_id"], pa.string()),
            "rank": pa.array(cols["rank"], pa.int16()),
            "item_id": pa.array(cols["item_id"], pa.string()),
            "score": pa.array(cols["score"], pa.float32()),
            "strategy": pa.array(cols["strategy"], pa.string()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    target = f"{output.rstrip('/')}/part-{shard_index:05d}-of-{shard_count:05d}.parquet"
    store.write_bytes(target, buf.getvalue())
    summary = {
        "output": target,
        "users": len(mine),
        "rows": table.num_rows,
        "model_version": rec.version,
        "seconds": round(time.perf_counter() - began, 2),
    }
    log.info("batch %s", summary)
    return summary
