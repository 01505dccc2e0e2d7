"""The deletion job: remove every pending erasure request's users from the interaction data.

Each data object (CSV/TSV, optionally gzipped, or Parquet) that holds a row of one of those
users is rewritten without those rows, under the same key: on a versioned bucket that makes a
new current version, and the old one expires by the bucket's lifecycle rule for noncurrent
versions. Objects without such rows are left alone. Rows are attributed to users exactly as
training reads them (training.data.normalise_ids: an id stored as 12.0 in a float column with
nulls, or as a category, is user "12"), so what training would see is what is removed. A
rewrite on S3 is conditional on the ETag that was read (If-Match): an object changed in
between (an upload, another deletion job) is read again, so no write puts rows back.
A Parquet object keeps its row groups, compression and schema.

Then every location is read again, and a request is marked done only when that re-read
finds none of the user's rows; the users' fingerprints leave the history-sync state, and
the user store loses what is left of them. A done record keeps only a hash of the id.

Batch recommendation outputs (training/batch.py: Parquet with a `user_id` column) hold user
ids too: locations given as `batch_uris` lose the users' rows the same way.

Runs before every training (the training container, on S3, on its local copy of the data
channel, and on LMREC_BATCH_URI), as the retrain function's own job when requests wait and
no training is due, and as `lmrec erase`.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from lmrec import cas, erasure, store

from training.data import DataError, normalise_ids, table_from_bytes

log = logging.getLogger(__name__)
BATCH_USER_COL = "user_id"  # training/batch.py's output column
REWRITE_ATTEMPTS = 5


class RowsFoundAgain(store.StoreError):
    """An erased user's rows were in the data after the rewrite (an upload meanwhile)."""


def _is_parquet(uri: str) -> bool:
    return uri.lower().endswith((".parquet", ".pq"))


def _ids(df: pd.DataFrame, user_col: str, uri: str) -> pd.Series:
    if user_col not in df.columns:
        raise DataError(f"{uri}: no column {user_col!r} to find users' rows by")
    return normalise_ids(df[user_col])  # the ids training would read; nulls match no one


def _parquet_without(raw: bytes, uri: str, users: set[str], user_col: str):
    """(new bytes, rows removed): each row group filtered and written as one group again,
    with the file's own schema and each column's codec."""
    source = pq.ParquetFile(io.BytesIO(raw))
    groups, removed = [], 0
    for g in range(source.metadata.num_row_groups):
        table = source.read_row_group(g)
        hit = _ids(table.select([user_col]).to_pandas(), user_col, uri).isin(users).to_numpy()
        removed += int(hit.sum())
        groups.append(table.filter(pa.array(~hit)))
    if not removed:
        return None, 0
    meta = source.metadata
    codecs = {}
    if meta.num_row_groups:
        first = meta.row_group(0)
        for i in range(first.num_columns):
            codec = first.column(i).compression.lower()
            codecs[first.column(i).path_in_schema] = "none" if codec == "uncompressed" else codec
    buf = io.BytesIO()
    with pq.ParquetWriter(
        buf, source.schema_arrow, compression=codecs or "snappy", version=meta.format_version
    ) as writer:
        for group in groups:
            if group.num_rows:
                writer.write_table(group, row_group_size=group.num_rows)
    return buf.getvalue(), removed


def _text_without(raw: bytes, uri: str, users: set[str], user_col: str):
    df = table_from_bytes(raw, uri)  # every cell a string, as training reads CSV
    hit = _ids(df, user_col, uri).isin(users).to_numpy()
    if not hit.any():
        return None, 0
    name = uri.lower()
    body = gzip.decompress(raw) if name.endswith(".gz") else raw
    # The file's own header line, byte order mark and line ending are written back as they
    # were: pandas would rename a repeated column ("note" -> "note.1") and drop the rest.
    sep = "\t" if name.endswith(".tsv") else ","
    header, eol = _own_header(body, sep, len(df.columns))
    rows = df[~hit].to_csv(index=False, header=header is None, sep=sep, lineterminator=eol)
    text = (header + eol.encode() if header is not None else b"") + rows.encode()
    # mtime=0: the same rows give the same bytes (and the same ETag) on every run
    return (gzip.compress(text, mtime=0) if name.endswith(".gz") else text), int(hit.sum())


def _own_header(body: bytes, sep: str, columns: int) -> tuple[bytes | None, str]:
    """(the file's header line as it is, with any BOM; its line ending), or (None, "\n")
    where that line cannot be kept as it is (a quoted newline in it, CR-only line endings,
    a blank first line): pandas then writes the header."""
    end = body.find(b"\n")
    line = body if end < 0 else body[:end]
    eol = "\n"
    if line.endswith(b"\r"):
        line, eol = line[:-1], "\r\n"
    try:
        fields = next(csv.reader([line.decode("utf-8-sig")], delimiter=sep), [])
    except (UnicodeDecodeError, csv.Error):
        return None, "\n"
    odd_quotes = line.count(b'"') % 2  # a quoted newline inside the header
    if odd_quotes or b"\r" in line or len(fields) != columns or not line.strip():
        return None, "\n"
    return line, eol


def _without(raw: bytes, uri: str, users: set[str], user_col: str):
    if _is_parquet(uri):
        try:
            return _parquet_without(raw, uri, users, user_col)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{uri}: cannot be read as Parquet: {exc}") from None
    return _text_without(raw, uri, users, user_col)


def _read_tagged(uri: str) -> tuple[bytes, str | None] | None:
    """(content, ETag) on S3 (the tag a conditional rewrite needs); local files: no tag."""
    if store.parse(uri).scheme == "s3":
        return cas.read(uri)
    try:
        return store.read_bytes(uri), None
    except store.NotFound:
        return None


def purge_object(uri: str, users: set[str], user_col: str = "user_id") -> int:
    """Rewrite one object without the users' rows; the number of rows removed."""
    for _ in range(REWRITE_ATTEMPTS):
        got = _read_tagged(uri)
        if got is None:
            return 0  # deleted meanwhile: nothing left to remove
        raw, tag = got
        new, removed = _without(raw, uri, users, user_col)
        if new is None:
            return 0
        if tag is None:
            store.write_bytes(uri, new)
        elif not cas.write(uri, new, tag):
            continue  # changed since it was read: read it again
        log.info("erasure: %s rewritten without %d row(s)", uri, removed)
        return removed
    raise store.StoreError(f"{uri}: changed during each of {REWRITE_ATTEMPTS} rewrites")


def must_exist(uri: str, what: str, hint: str = "", parent_enough: bool = False) -> None:
    """A local path that does not exist is a mistake, not "no data yet" (an S3 prefix may be
    empty): without this a mistyped --data found no rows and marked every request done, and
    a sync with a mistyped --erasure wrote erased users back. `parent_enough`: a folder not
    made yet beside existing ones is fine (an erasure root before its first request)."""
    loc = store.parse(uri)
    path = Path(loc.key)
    if loc.scheme != "file" or path.exists() or (parent_enough and path.parent.is_dir()):
        return
    raise DataError(f"{what} {uri}: no such file or directory" + (f" ({hint})" if hint else ""))


def _files(data_uri: str) -> list[str]:
    """Every data-like file under the location, those below hidden or "_" folders included
    (training skips them as unfinished; an erased user's rows must go from them too)."""
    try:
        return [f for f in store.list_files(data_uri) if store.is_data_file(f)]
    except store.StoreError:
        return []  # no data (yet): nothing to remove


def _tolerant(data_uri: str, uri: str, exc: Exception) -> bool:
    """A file below a hidden or "_" folder that is not an interactions file (a schema, a
    half-written part) is passed over with a warning; one training reads is an error."""
    if store.is_data_file(uri, str(store.parse(data_uri))):
        return False
    log.warning("erasure: %s passed over (not interactions: %s)", uri, exc)
    return True


def purge(data_uri: str, users: set[str], user_col: str = "user_id") -> dict:
    rewritten, rows = 0, 0
    files = _files(data_uri)
    for uri in files:
        try:
            removed = purge_object(uri, users, user_col)
        except DataError as exc:
            if _tolerant(data_uri, uri, exc):
                continue
            raise
        rows += removed
        rewritten += bool(removed)
    return {"objects_scanned": len(files), "objects_rewritten": rewritten, "rows_removed": rows}


def rows_left(data_uri: str, users: set[str], user_col: str = "user_id") -> Counter:
    """The users' rows still in a location, per user: read again from the store."""
    left: Counter = Counter()
    for uri in _files(data_uri):
        try:
            ids = _user_ids(uri, user_col)
        except DataError as exc:
            if _tolerant(data_uri, uri, exc):
                continue
            raise
        left.update(ids[ids.isin(users)].tolist())
    return left


def _user_ids(uri: str, user_col: str) -> pd.Series:
    if not _is_parquet(uri):
        return _ids(table_from_bytes(store.read_bytes(uri), uri), user_col, uri)
    try:
        columns = pq.read_table(io.BytesIO(store.read_bytes(uri)), columns=[user_col])
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise DataError(f"{uri}: cannot read column {user_col!r}: {exc}") from None
    return _ids(columns.to_pandas(), user_col, uri)


def run(
    erasure_root: str,
    data_uris: list[str],
    user_col: str = "user_id",
    state_uri: str = "",
    user_store=None,
    batch_uris: list[str] | None = None,
) -> dict:
    """Carry out every pending request over these locations; a request is marked done only
    when a re-read of every location finds none of the user's rows (a failure, or rows
    found again, leave it pending for the next run)."""
    began = time.perf_counter()
    erasure.adopt_legacy(erasure_root)
    requests = erasure.pending(erasure_root)
    summary: dict = {"requests": len(requests), "objects_rewritten": 0, "rows_removed": 0}
    if not requests:
        return summary
    users = {r.user_id for r in requests}
    locations = [(uri, user_col) for uri in data_uris]
    # batch outputs' column is always user_id, whatever the data's
    locations += [(uri, BATCH_USER_COL) for uri in batch_uris or []]
    for uri in data_uris:  # before any rewrite: a mistyped path must not close requests
        must_exist(uri, "data location", "the requests stay pending")  # not batch outputs:
        # their location may not exist yet
    for uri, col in locations:
        done = purge(uri, users, col)
        summary["objects_rewritten"] += done["objects_rewritten"]
        summary["rows_removed"] += done["rows_removed"]
    if state_uri:
        from training.histories import drop_users

        summary["fingerprints_dropped"] = drop_users(state_uri, sorted(users))
    if user_store is not None:  # the API deleted them (or began to, within its deadline);
        for user in users:  # this takes the rest, what a history sync racing with the
            user_store.delete_user(user)  # DELETE wrote back, and any later events
    left: Counter = Counter()
    for uri, col in locations:
        left.update(rows_left(uri, users, col))
    where = {"data": data_uris, "batch": list(batch_uris or [])}
    summary["completed"] = sum(erasure.complete(r, where) for r in requests if not left[r.user_id])
    summary["seconds"] = round(time.perf_counter() - began, 3)
    log.info("erasure job %s", summary)
    if left:  # rows arrived while the job ran: they are not trained on, the next run retries
        raise RowsFoundAgain(
            f"rows of {len(left)} erased user(s) were found again after the rewrite; "
            "their requests stay pending"
        )
    return summary
