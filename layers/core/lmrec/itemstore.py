"""Items added or changed after a model was built: validated records and where they live.

Storage: a DynamoDB table of its own (LMREC_ITEM_STORE=dynamodb://table, keys p + sk):

  p        sk                               attributes
  "item"   <item id>                        fields (JSON object), available, added_ms,
                                            updated_ms: the item's current record
  "log"    "<written ms, 15 digits>#<16 hex>"  the same, plus item_id and expires_at (TTL):
                                            one change, readable by the time it was written

Why a table of its own rather than a partition of the user table: no user id (any string of
the API, any id of the data) can ever name the items' partition, and the ingest function is
granted this table only. Why time-ordered log keys rather than a counter: a counter's
numbers become visible out of order (writer A takes 10, writer B takes 11 and lands first,
a poll reads 11 and never sees 10); with keys of the write's own clock, a poll re-reads an
overlap window (OVERLAP_MS, longer than any write can take to land) and applying a change
twice is harmless (the newer updated_ms wins). So a warm instance asks "what changed since
t - overlap" with ONE Query of the "log" partition, usually answered empty: 0.5 read request
units (eventually consistent, under 4 KB).

A cold start reads the "item" partition whole (pages of 1 MB).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from lmrec.userstore import BATCH, UserStoreError, _table_name_ok

ITEMS_PK = "item"
LOG_PK = "log"
LOG_TTL_SECONDS = 86_400  # pollers read the last seconds; an instance idle longer reloads
# > one BatchWriteItem's landing: the API's AWS budget (3 s), the batch writer's retries of
# throttled requests (under 10 s). Changes of the last OVERLAP_MS are re-read by each poll.
OVERLAP_MS = 15_000
MAX_FIELD_CHARS = 10_000  # one field's text
MAX_BATCH = 100  # items per PUT
MAX_ITEM_BYTES = 64_000  # one item's JSON (DynamoDB allows 400 KB a record; two per item)
MAX_ID_BYTES = 1024  # DynamoDB's sort key limit (an id is the "item" record's sort key)


class ItemStoreUnavailable(RuntimeError):
    """The item store could not be reached or used."""


class ItemInvalid(ValueError):
    """An item (or batch) that is not stored; the message says which and why."""


@dataclass(frozen=True)
class ItemRecord:
    item_id: str
    fields: dict[str, str | float | int | bool | None]
    available: bool
    added_ms: int  # when the item was first stored: its age for exploration
    updated_ms: int  # this version: the newer of two versions wins

    def newer_than(self, other: ItemRecord | None) -> bool:
        return other is None or self.updated_ms >= other.updated_ms

    def attributes(self) -> dict:
        return dict(self.fields)


def now_ms() -> int:
    return int(time.time() * 1000)


def _is_unicode(text: str) -> bool:
    """False for a lone surrogate (JSON's "\\udc00"): such text is stored, but every response
    that carries it fails to encode, so it is refused at the door."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_value(item_id: str, column: str, value: object) -> None:
    if not _is_unicode(column) or (isinstance(value, str) and not _is_unicode(value)):
        raise ItemInvalid(f"item {item_id[:64]!r}: {column[:64]!r} is not valid Unicode")
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ItemInvalid(f"item {item_id[:64]!r}: {column[:64]!r} must be a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ItemInvalid(f"item {item_id[:64]!r}: {column[:64]!r} is not a finite number")
    if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
        raise ItemInvalid(
            f"item {item_id[:64]!r}: {column[:64]!r} has {len(value)} characters, more than "
            f"{MAX_FIELD_CHARS}"
        )


def check_id(item_id: object) -> str:
    if not isinstance(item_id, str) or not item_id.strip():
        raise ItemInvalid(f"item_id must be a non-blank string, got {str(item_id)[:64]!r}")
    if not _is_unicode(item_id):
        raise ItemInvalid(f"item_id {item_id[:64]!r} is not valid Unicode")
    if len(item_id.encode("utf-8")) > MAX_ID_BYTES or len(item_id) > 256:
        raise ItemInvalid(f"item_id {item_id[:64]!r}...: longer than 256 characters")
    return item_id


def check_items(raw: Sequence[Mapping], columns: Sequence[str] | None) -> list[dict]:
    """Each item as {"item_id", "fields", "available"}; ItemInvalid for the first bad one, so
    a batch is stored whole or not at all. `columns`: the catalog's (None: any). "fields" is
    None where the item gave none (keep what the item has), {} where it gave {}."""
    if not 1 <= len(raw) <= MAX_BATCH:
        raise ItemInvalid(f"send 1 to {MAX_BATCH} items, not {len(raw)}")
    out, seen = [], set()
    for item in raw:
        item_id = check_id(item.get("item_id"))
        if item_id in seen:
            raise ItemInvalid(f"item {item_id[:64]!r} appears twice in the batch")
        seen.add(item_id)
        given = item.get("fields")
        fields = dict(given or {})
        unknown = sorted(set(fields) - set(columns)) if columns is not None else []
        if unknown:
            raise ItemInvalid(
                f"item {item_id[:64]!r}: columns not in the catalog: "
                f"{', '.join(repr(c[:64]) for c in unknown[:10])} (it has: "
                f"{', '.join(columns or [])[:300]})"
            )
        for column, value in fields.items():
            _check_value(item_id, column, value)
        if len(json.dumps(fields)) > MAX_ITEM_BYTES:
            raise ItemInvalid(f"item {item_id[:64]!r}: more than {MAX_ITEM_BYTES} bytes")
        # no "fields" at all (a PUT of {"item_id", "available"}): None, so the caller keeps
        # the item's stored or catalog fields instead of clearing them
        fields_or_none = None if given is None else fields
        out.append(
            {"item_id": item_id, "fields": fields_or_none, "available": item.get("available")}
        )
    return out


def _to_dynamo(r: ItemRecord) -> dict:
    return {
        "fields": {"S": json.dumps(r.fields, separators=(",", ":"))},
        "available": {"BOOL": r.available},
        "added_ms": {"N": str(r.added_ms)},
        "updated_ms": {"N": str(r.updated_ms)},
    }


def _from_dynamo(item_id: str, a: dict) -> ItemRecord:
    return ItemRecord(
        item_id=item_id,
        fields=json.loads(a["fields"]["S"]),
        available=bool(a["available"]["BOOL"]),
        added_ms=int(a["added_ms"]["N"]),
        updated_ms=int(a["updated_ms"]["N"]),
    )


def log_key(r: ItemRecord, written_ms: int) -> str:
    """When the change was written (what polls read by), then the item: one key per item
    and millisecond (the same change written twice overwrites itself)."""
    digest = hashlib.sha256(r.item_id.encode()).hexdigest()[:16]
    return f"{written_ms:015d}#{digest}"


class ItemStore:
    """The DynamoDB item store (botocore; AWS_ENDPOINT_URL honoured)."""

    def __init__(self, table: str, attempts: int = 8):
        from lmrec.userstore import DynamoUserStore

        self.table = table
        self.uri = f"dynamodb://{table}"
        self._writer = DynamoUserStore(table, attempts)  # its batch writer and retries
        self._writer.uri = self.uri

    @staticmethod
    def _client():
        from lmrec import events

        return events._client()

    def put(self, records: Iterable[ItemRecord]) -> int:
        """Both records of each item, 12 items (24 requests) per BatchWriteItem. Each
        batch's change records are keyed by the time of that batch's write, so a poll's
        overlap covers one batch's landing, not a whole file's. A store failure raises
        ItemStoreUnavailable; what was written stays (a PUT again is idempotent)."""
        records = list(records)
        expires = str(int(time.time()) + LOG_TTL_SECONDS)
        per_call = BATCH // 2
        try:
            for lo in range(0, len(records), per_call):
                at = now_ms()
                requests = []
                for r in records[lo : lo + per_call]:
                    state = {"p": {"S": ITEMS_PK}, "sk": {"S": r.item_id}, **_to_dynamo(r)}
                    change = {"p": {"S": LOG_PK}, "sk": {"S": log_key(r, at)}, **_to_dynamo(r)}
                    change |= {"item_id": {"S": r.item_id}, "expires_at": {"N": expires}}
                    requests += [{"PutRequest": {"Item": state}}, {"PutRequest": {"Item": change}}]
                self._writer._write(requests)
        except Exception as exc:
            raise ItemStoreUnavailable(f"item store {self.uri}: {exc}") from None
        return len(records)

    def _pages(self, **query) -> Iterable[dict]:
        start = None
        while True:
            kwargs = dict(query, **({"ExclusiveStartKey": start} if start else {}))
            try:
                reply = self._client().query(TableName=self.table, **kwargs)
            except Exception as exc:
                raise ItemStoreUnavailable(f"item store {self.uri}: {exc}") from None
            yield from reply.get("Items", [])
            start = reply.get("LastEvaluatedKey")
            if not start:
                return

    def all(self) -> dict[str, ItemRecord]:
        """Every item's current record (a cold start, or an instance idle past the log)."""
        pages = self._pages(
            KeyConditionExpression="p = :p", ExpressionAttributeValues={":p": {"S": ITEMS_PK}}
        )
        return {a["sk"]["S"]: _from_dynamo(a["sk"]["S"], a) for a in pages}

    def changes(self, since_ms: int) -> list[ItemRecord]:
        """Changes stamped after `since_ms` (the caller subtracts OVERLAP_MS), oldest first."""
        pages = self._pages(
            KeyConditionExpression="p = :p AND sk > :s",
            ExpressionAttributeValues={
                ":p": {"S": LOG_PK},
                ":s": {"S": f"{max(0, since_ms):015d}"},
            },
        )
        return [_from_dynamo(a["item_id"]["S"], a) for a in pages]


def parse_uri(uri: str) -> str:
    """The table of dynamodb://table; UserStoreError (a ValueError) for anything else."""
    parsed = urlparse(uri)
    if parsed.scheme != "dynamodb" or parsed.path.strip("/") or not _table_name_ok(parsed.netloc):
        raise UserStoreError(f"{uri!r}: an item store is dynamodb://<table name>")
    return parsed.netloc


def open_item_store(uri: str) -> ItemStore:
    return ItemStore(parse_uri(uri))


def create_table(name: str) -> None:
    """The item table as template.yaml declares it (the local stack and tests)."""
    from lmrec import aws

    aws.create_keyed_table(name, "p", "sk")
