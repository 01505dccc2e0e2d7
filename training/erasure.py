"""The deletion job: remove every pending erasure request's users from the interaction data.

Each data object (CSV/TSV, optionally gzipped, or Parquet) that holds a row of one of those
users is rewritten without those rows, under the same key: on a versioned bucket that makes a
new current version, and the old one expires by the bucket's lifecycle rule for noncurrent
versions. Objects without such rows are left alone. Rows are attributed to users exactly as
training reads them (training.data's id parsing), so what training would see is what is
removed. Then the users' fingerprints leave the history-sync state, and each request is
marked done (its record keeps only a hash of the id).

Batch recommendation outputs (training/batch.py: Parquet with a `user_id` column) hold user
ids too: locations given as `batch_uris` lose the users' rows the same way.

Runs before every training (the training container, on S3, on its local copy of the data
channel, and on LMREC_BATCH_URI) and as `lmrec erase`.
"""

from __future__ import annotations

import gzip
import io
import logging
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from lmrec import erasure, store

from training.data import DataError, _ids, data_files, read_table

log = logging.getLogger(__name__)
BATCH_USER_COL = "user_id"  # training/batch.py's output column


def _user_mask(df: pd.DataFrame, user_col: str, users: set[str], uri: str) -> pd.Series:
    if user_col not in df.columns:
        raise DataError(f"{uri}: no column {user_col!r} to find users' rows by")
    try:
        parsed = _ids(df, user_col, uri)  # the ids training would read
    except DataError:  # a row with an empty id: training refuses the file, erasure must not
        parsed = df[user_col].astype(str)
    return parsed.isin(users)


def _encode(df: pd.DataFrame, uri: str) -> bytes:
    name = uri.lower()
    if name.endswith((".parquet", ".pq")):
        # The object's own column types: from pandas alone, string columns would come back
        # as large_string (and readers expecting the old schema would differ). Only an
        # object that holds the users' rows pays this second read.
        schema = pq.read_schema(io.BytesIO(store.read_bytes(uri)))
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), buf)
        return buf.getvalue()
    text = df.to_csv(index=False, sep="\t" if name.endswith(".tsv") else ",").encode()
    # mtime=0: the same rows give the same bytes (and the same ETag) on every run
    return gzip.compress(text, mtime=0) if name.endswith(".gz") else text


def purge_object(uri: str, users: set[str], user_col: str = "user_id") -> int:
    """Rewrite one object without the users' rows; the number of rows removed."""
    df = read_table(uri)
    mask = _user_mask(df, user_col, users, uri)
    removed = int(mask.sum())
    if removed:
        store.write_bytes(uri, _encode(df[~mask.to_numpy()], uri))
        log.info("erasure: %s rewritten without %d row(s)", uri, removed)
    return removed


def purge(data_uri: str, users: set[str], user_col: str = "user_id") -> dict:
    rewritten, rows = 0, 0
    try:
        files = data_files(data_uri)
    except DataError:
        files = []  # no data (yet): nothing to remove
    for uri in files:
        removed = purge_object(uri, users, user_col)
        rows += removed
        rewritten += bool(removed)
    return {"objects_scanned": len(files), "objects_rewritten": rewritten, "rows_removed": rows}


def run(
    erasure_root: str,
    data_uris: list[str],
    user_col: str = "user_id",
    state_uri: str = "",
    user_store=None,
    batch_uris: list[str] | None = None,
) -> dict:
    """Carry out every pending request over these data locations; mark them done only when
    every location was purged (a failure leaves them pending for the next run)."""
    began = time.perf_counter()
    requests = erasure.pending(erasure_root)
    summary: dict = {"requests": len(requests), "objects_rewritten": 0, "rows_removed": 0}
    if not requests:
        return summary
    users = {r.user_id for r in requests}
    for uri in data_uris:
        done = purge(uri, users, user_col)
        summary["objects_rewritten"] += done["objects_rewritten"]
        summary["rows_removed"] += done["rows_removed"]
    for uri in batch_uris or []:  # their column is always user_id, whatever the data's
        done = purge(uri, users, BATCH_USER_COL)
        summary["objects_rewritten"] += done["objects_rewritten"]
        summary["rows_removed"] += done["rows_removed"]
    if state_uri:
        from training.histories import drop_users

        summary["fingerprints_dropped"] = drop_users(state_uri, sorted(users))
    if user_store is not None:  # the API deleted them at once; this also takes what a history
        for user in users:  # sync racing with the DELETE wrote back, and any later events
            user_store.delete_user(user)
    where = {"data": data_uris, "batch": list(batch_uris or [])}
    completed = sum(erasure.complete(r, where) for r in requests)
    summary["completed"] = completed
    summary["seconds"] = round(time.perf_counter() - began, 3)
    log.info("erasure job %s", summary)
    return summary
