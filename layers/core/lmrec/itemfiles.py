"""Item files uploaded under the data bucket's items prefix (data/items/*.csv[.gz]) as live
item records: what the items function runs on each S3 "Object Created".

A file is a CSV with an item_id column, the catalog's other columns, and optionally an
`available` column (true/false/1/0). Unlike PUT /v1/items (a batch is all or nothing), a
file is taken row by row: good rows are stored, bad rows are reported (first 20) and
skipped, since a file cannot be answered with a 4xx. Only rows that differ from the stored
record are written, so uploading the same file again costs one read. A file of more than
MAX_FILE_ROWS rows is the training catalog, not a feed of new items: it is left to the
next training job (logged), since writing it would cost a write per item for nothing.
"""

from __future__ import annotations

import csv
import gzip
import io

from lmrec.itemstore import (
    ItemInvalid,
    ItemRecord,
    ItemStore,
    check_items,
    now_ms,
)

PREFIX = "data/items/"
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_FILE_ROWS = 20_000
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def read_rows(name: str, data: bytes) -> list[dict]:
    """The CSV's rows as dicts of strings; ValueError for a file that is not one."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{len(data)} bytes, more than {MAX_FILE_BYTES}")
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "item_id" not in reader.fieldnames:
        raise ValueError("no item_id column")
    return list(reader)


def _item(row: dict) -> dict:
    fields = {k: v for k, v in row.items() if k not in ("item_id", "available") and k is not None}
    if None in row:
        raise ItemInvalid(f"item {str(row.get('item_id'))[:64]!r}: more values than columns")
    flag = str(row.get("available") or "true").strip().lower()
    if flag not in _TRUE | _FALSE:
        raise ItemInvalid(f"item {str(row.get('item_id'))[:64]!r}: available must be true/false")
    return {"item_id": row.get("item_id"), "fields": fields, "available": flag in _TRUE}


def ingest(store: ItemStore, name: str, data: bytes) -> dict:
    """Store the file's new and changed rows; a summary of what happened."""
    try:
        rows = read_rows(name, data)
    except (ValueError, OSError, EOFError, csv.Error) as exc:
        return {"file": name, "status": "refused", "reason": str(exc)[:300]}
    if len(rows) > MAX_FILE_ROWS:
        return {
            "file": name,
            "status": "skipped",
            "reason": f"{len(rows)} rows: a catalog for training (live files hold at most "
            f"{MAX_FILE_ROWS})",
        }
    good, bad = [], []
    for row in rows:
        try:
            good += check_items([_item(row)], None)
        except ItemInvalid as exc:
            bad.append(str(exc))
    current, stamp = store.all(), now_ms()
    records = []
    for item in {i["item_id"]: i for i in good}.values():  # a repeated id: the last row wins
        old = current.get(item["item_id"])
        if old and old.fields == item["fields"] and old.available == item["available"]:
            continue
        records.append(
            ItemRecord(
                item["item_id"],
                item["fields"],
                item["available"],
                old.added_ms if old else stamp,
                max(stamp, old.updated_ms + 1) if old else stamp,
            )
        )
    store.put(records)
    return {
        "file": name,
        "status": "stored",
        "rows": len(rows),
        "written": len(records),
        "unchanged": len(good) - len(records),
        "refused": len(bad),
        "problems": bad[:20],
    }
