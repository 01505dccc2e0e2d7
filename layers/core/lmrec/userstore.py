"""The user store: each user's recent history and real-time events, outside any model.

One layout for both backends (single table, partition = user):

  user_id   sk                                   attributes
  "42"      "history"                            items (JSON list of item ids, oldest
                                                 first), updated_at
  "42"      "e#<ms, 15 digits>#<16 hex>"         item_id, event_type, ts, expires_at (TTL)
  "42"      "c#<16 hex of the item id>"          item, n, last_seen, expires_at (TTL)
  "   "     "t#<bucket, 10 digits>#<16 hex>"     item, n, expires_at (TTL): trending counters
                                                 (lmrec.trending; blank partitions, SHARDS)

"history" sorts after every "e#..." key, so ONE descending Query with Limit n+1 returns the
history record and the user's n newest events together. The event key is derived from
(timestamp, item, event type): the same event posted twice overwrites itself (stored once).
"c#" records (sorted below the events, so that Query reads them last) count the user's
events per item and keep the newest one's time: item_counts() reads them in ONE Query, so
repeats can be scored without reading every event. They go with the user's partition when
the user is erased (delete_user_until deletes every record of the partition). An event is
counted (its "c#" record, and its trending counter) exactly once, when it is first stored,
whenever it arrives and however often it is posted: in one transaction with its record
(SQLite: one SQL transaction; DynamoDB: lmrec.event_writes).

Backends, chosen by a URI (LMREC_USER_STORE):
  dynamodb://table   the DynamoDB table of template.yaml (botocore; AWS_ENDPOINT_URL honoured)
  sqlite:///path     an embedded file for local use, no server (Python's sqlite3)

History is item ids as strings, independent of any model: serving maps them to the live
model's rows and skips ids it does not know.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lmrec import trending
from lmrec.event_writes import (
    COUNT_PREFIX,
    TRENDING_PREFIX,
    PostWriter,
    Trending,
    chunks,
    per_item,
    per_user_item,
)
from lmrec.events import Event

HISTORY_SK = "history"
EVENT_PREFIX = "e#"
BATCH = 25  # BatchWriteItem: at most 25 requests (and 16 MB) per call
MAX_RECORD_BYTES = 350_000  # DynamoDB's item limit is 400 KB; keep a margin for names
DELETE_PAGE = 500  # keys per Query page when a user is deleted: 20 batches of 25
MAX_KEY_BYTES = 2048  # DynamoDB's partition key: 1..2048 bytes of UTF-8


class UserStoreUnavailable(RuntimeError):
    """The user store could not be reached or used."""


class UserStoreError(ValueError):
    """A user-store URI that names no usable store."""


@dataclass(frozen=True)
class ItemCount:
    count: int  # the user's events of this item within the events' TTL
    last_seen: float  # unix seconds of the newest of them


@dataclass
class UserItems:
    history: list[str]  # from the data, oldest first
    events: list[str]  # the newest real-time events, oldest first

    def items(self) -> list[str]:
        return [*self.history, *self.events]


def event_key(e: Event) -> str:
    """Deterministic: fixed-width milliseconds sort as strings; the digest of (item, type)
    keeps different events of one millisecond apart and makes a repeat the same key."""
    digest = hashlib.sha256(f"{e.item_id}\0{e.event_type}".encode()).hexdigest()[:16]
    return f"{EVENT_PREFIX}{round(e.timestamp * 1000):015d}#{digest}"


def history_json(items: Sequence[str]) -> str:
    """The newest items that fit one record (DynamoDB: 400 KB per item)."""
    text = json.dumps(list(items), separators=(",", ":"))
    lo = 0
    while len(text.encode()) > MAX_RECORD_BYTES:  # rare: only absurdly long ids or histories
        lo += max(1, (len(items) - lo) // 10)
        text = json.dumps(list(items[lo:]), separators=(",", ":"))
    return text


def _unique(events: Iterable[Event]) -> dict[tuple[str, str], Event]:
    """(user, event key) -> event. One BatchWriteItem or transaction may not name a record
    twice: the same event twice in one post is written once (they are identical)."""
    return {(e.user_id, event_key(e)): e for e in events}


class UserStore:
    """What serving, the history sync and erasure need; see the two backends below."""

    uri: str

    def put_events(
        self, events: list[Event], ttl_seconds: int, trend: Trending | None = None
    ) -> int:
        """Store the events; those not stored before (an expired one counts as not stored)
        are added to their users' item counts and, with `trend`, to the trending counters of
        the bucket of `trend.now` (an event dated over an hour before is not trending). All
        in one transaction: a retried post counts once, a late event counts, last_seen
        stays the newest. Returns the distinct events posted (stored, now or before)."""
        raise NotImplementedError

    def recent(self, user_id: str, limit: int) -> UserItems:
        raise NotImplementedError

    def item_counts(self, user_id: str) -> dict[str, ItemCount]:
        """item id -> the user's count and last-seen time, from the events posted within
        their TTL (the history from the data is in recent()). One Query."""
        raise NotImplementedError

    def trending_counts(
        self, first: int, last: int, limit: int
    ) -> tuple[list[tuple[int, str, float]], int | None]:
        """(bucket, item, count) rows of the buckets first..last, every shard, newest buckets
        first and at most `limit` of them; and the newest bucket that may be partly read
        because the limit was reached (None: all read)."""
        raise NotImplementedError

    def put_histories(self, histories: Iterable[tuple[str, Sequence[str]]]) -> int:
        raise NotImplementedError

    def delete_user(self, user_id: str) -> int:
        return self.delete_user_until(user_id)[0]

    def delete_user_until(self, user_id: str, stop_at: float | None = None) -> tuple[int, bool]:
        """(records deleted, whether all were): no call is started after `stop_at`
        (time.monotonic()); what is left is the deletion job's."""
        raise NotImplementedError

    def holds(self, user_id: str) -> bool:
        """Whether a record can be keyed by this id (DynamoDB: 1..2048 bytes of UTF-8)."""
        try:
            size = len(user_id.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate: no store can key it
            return False
        return 0 < size <= MAX_KEY_BYTES


# -- SQLite ---------------------------------------------------------------------------------
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS user_items (
    user_id TEXT NOT NULL, sk TEXT NOT NULL, item_id TEXT, event_type TEXT, ts REAL,
    items TEXT, updated_at REAL, expires_at INTEGER,
    PRIMARY KEY (user_id, sk)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS item_counts (
    user_id TEXT NOT NULL, item_id TEXT NOT NULL, n INTEGER NOT NULL, last_seen REAL NOT NULL,
    expires_at INTEGER, PRIMARY KEY (user_id, item_id)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS trending (
    bucket INTEGER NOT NULL, item_id TEXT NOT NULL, n REAL NOT NULL, expires_at INTEGER,
    PRIMARY KEY (bucket, item_id)
) WITHOUT ROWID""",
)


class SqliteUserStore(UserStore):
    """The embedded store: one file, one connection per thread, WAL so that a history sync
    can write while a server reads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.uri = f"sqlite://{self.path}"
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._conn() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise UserStoreUnavailable(f"user store {self.uri}: {exc}") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10)
            self._local.conn = conn
        return conn

    def _run(self, fn):
        try:
            with self._conn() as conn:  # a transaction: committed, or rolled back on error
                return fn(conn)
        except sqlite3.Error as exc:
            raise UserStoreUnavailable(f"user store {self.uri}: {exc}") from None

    def put_events(
        self, events: list[Event], ttl_seconds: int, trend: Trending | None = None
    ) -> int:
        now = int(time.time())
        expires = now + ttl_seconds
        unique = _unique(events)

        def write(c: sqlite3.Connection) -> None:  # events and counts in one transaction
            # an event is new when it is inserted (or replaces an expired one): only those count
            new = [e for (_, sk), e in unique.items() if self._insert(c, sk, e, expires, now)]
            c.executemany(
                "INSERT INTO item_counts (user_id, item_id, n, last_seen, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, item_id) DO UPDATE SET "
                "n = n + excluded.n, last_seen = max(last_seen, excluded.last_seen), "
                "expires_at = excluded.expires_at",
                [(u, i, n, t, expires) for (u, i), (n, t) in per_user_item(new).items()],
            )
            if trend is not None:
                self._count_trending(c, per_item(new, trend.now), trend)

        self._run(write)
        return len(unique)  # what is stored: a repeated event is one record

    @staticmethod
    def _insert(c: sqlite3.Connection, sk: str, e: Event, expires: int, now: int) -> bool:
        return bool(
            c.execute(
                "INSERT INTO user_items (user_id, sk, item_id, event_type, ts, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, sk) DO UPDATE SET "
                "item_id = excluded.item_id, event_type = excluded.event_type, "
                "ts = excluded.ts, expires_at = excluded.expires_at "
                "WHERE user_items.expires_at <= ?",
                (e.user_id, sk, e.item_id, e.event_type, float(e.timestamp), expires, now),
            ).rowcount
        )

    @staticmethod
    def _count_trending(c: sqlite3.Connection, counts: dict[str, int], trend: Trending) -> None:
        bucket = trending.bucket_of(trend.now)
        expires = trending.expires_at(bucket, trend.window_seconds)
        c.executemany(
            "INSERT INTO trending (bucket, item_id, n, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (bucket, item_id) DO UPDATE SET n = n + excluded.n",
            [(bucket, item, n, expires) for item, n in counts.items()],
        )

    def item_counts(self, user_id: str) -> dict[str, ItemCount]:
        rows = self._run(
            lambda c: c.execute(
                "SELECT item_id, n, last_seen FROM item_counts WHERE user_id = ? AND "
                "(expires_at IS NULL OR expires_at > ?)",
                (user_id, int(time.time())),
            ).fetchall()
        )
        return {item: ItemCount(int(n), float(last)) for item, n, last in rows}

    def trending_counts(
        self, first: int, last: int, limit: int
    ) -> tuple[list[tuple[int, str, float]], int | None]:
        rows = self._run(
            lambda c: c.execute(
                "SELECT bucket, item_id, n FROM trending WHERE bucket BETWEEN ? AND ? "
                "ORDER BY bucket DESC LIMIT ?",
                (first, last, limit),
            ).fetchall()
        )
        self._run(  # what TTL does in DynamoDB
            lambda c: c.execute("DELETE FROM trending WHERE expires_at <= ?", (int(time.time()),))
        )
        partial = int(rows[-1][0]) if len(rows) >= limit else None
        return [(int(b), item, float(n)) for b, item, n in rows], partial

    def recent(self, user_id: str, limit: int) -> UserItems:
        rows = self._run(
            lambda c: c.execute(
                "SELECT sk, item_id, items FROM user_items WHERE user_id = ? AND "
                "(expires_at IS NULL OR expires_at > ?) ORDER BY sk DESC LIMIT ?",
                (user_id, int(time.time()), limit + 1),
            ).fetchall()
        )
        history: list[str] = []
        events = []
        for sk, item_id, items in rows:
            if sk == HISTORY_SK:
                history = json.loads(items)
            elif item_id is not None:
                events.append(item_id)
        return UserItems(history, events[:limit][::-1])

    def put_histories(self, histories: Iterable[tuple[str, Sequence[str]]]) -> int:
        now = time.time()
        rows = [(user, HISTORY_SK, history_json(items), now) for user, items in histories]
        self._run(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO user_items (user_id, sk, items, updated_at) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
        )
        return len(rows)

    def delete_user_until(self, user_id: str, stop_at: float | None = None) -> tuple[int, bool]:
        def delete(c: sqlite3.Connection) -> int:  # one transaction: all or nothing, and fast
            gone = c.execute("DELETE FROM user_items WHERE user_id = ?", (user_id,)).rowcount
            return (
                gone + c.execute("DELETE FROM item_counts WHERE user_id = ?", (user_id,)).rowcount
            )

        return self._run(delete), True


# -- DynamoDB -------------------------------------------------------------------------------
class DynamoUserStore(UserStore):
    def __init__(self, table: str, attempts: int = 8):
        self.table = table
        self.uri = f"dynamodb://{table}"
        self.attempts = attempts

    @staticmethod
    def _client():
        from lmrec import events

        return events._client()

    def _fail(self, exc: Exception) -> UserStoreUnavailable:
        return UserStoreUnavailable(f"user store {self.uri}: {exc}")

    def _write_batch(self, requests: list[dict], stop_at: float | None = None) -> bool:
        """One BatchWriteItem of <= 25 requests; unprocessed items (throttling) are retried
        with exponential back-off and full jitter, as AWS advises. False when `stop_at`
        (time.monotonic()) came before every request was written."""
        pending = {self.table: requests}
        for attempt in range(self.attempts):
            if stop_at is not None and time.monotonic() >= stop_at:
                return False
            left = self._client().batch_write_item(RequestItems=pending).get("UnprocessedItems")
            if not left:
                return True
            pending = left
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        raise UserStoreUnavailable(f"user store {self.uri}: writes still throttled")

    def _write(self, requests: list[dict], threads: int = 1) -> None:
        batches = [requests[i : i + BATCH] for i in range(0, len(requests), BATCH)]
        try:
            if threads <= 1 or len(batches) <= 1:
                for batch in batches:
                    self._write_batch(batch)
                return
            from concurrent.futures import ThreadPoolExecutor

            # botocore clients are thread-safe; each call waits on the network far longer
            # than it computes, so a few threads multiply the sync's throughput.
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for _ in pool.map(self._write_batch, batches):
                    pass
        except UserStoreUnavailable:
            raise
        except Exception as exc:  # botocore errors of every kind mean "not stored"
            raise self._fail(exc) from None

    def put_events(
        self, events: list[Event], ttl_seconds: int, trend: Trending | None = None
    ) -> int:
        """One TransactWriteItems per 100 actions (lmrec.event_writes): a one-item post is
        ONE request, a retried or late event one more."""
        expires = str(int(time.time()) + ttl_seconds)
        unique = _unique(events)
        writer = PostWriter(self.table, self._transact, self._store_uncounted)
        try:
            for chunk in chunks(unique, trend):
                writer.write(chunk, expires, trend)
        except UserStoreUnavailable:
            raise
        except Exception as exc:  # botocore errors of every kind: the post is not stored
            raise self._fail(exc) from None
        return len(unique)  # what is stored: a repeated event is one record

    def _transact(self, **kwargs) -> None:
        self._client().transact_write_items(**kwargs)

    def _store_uncounted(self, items: list[dict]) -> None:
        """The events' records without their counts (BatchWriteItem: idempotent Puts), kept
        rather than lost when the transaction kept conflicting."""
        self._write([{"PutRequest": {"Item": item}} for item in items])

    def item_counts(self, user_id: str) -> dict[str, ItemCount]:
        now = time.time()
        out: dict[str, ItemCount] = {}
        kwargs: dict = {
            "KeyConditionExpression": "user_id = :u AND begins_with(sk, :c)",
            "ExpressionAttributeValues": {":u": {"S": user_id}, ":c": {"S": COUNT_PREFIX}},
        }
        try:
            while True:  # one page (1 MB: some 10,000 items) unless the user has more
                reply = self._client().query(TableName=self.table, **kwargs)
                for r in reply.get("Items", []):
                    if "expires_at" in r and float(r["expires_at"]["N"]) <= now:
                        continue  # TTL deletes lazily
                    out[r["item"]["S"]] = ItemCount(int(r["n"]["N"]), float(r["last_seen"]["N"]))
                if "LastEvaluatedKey" not in reply:
                    return out
                kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]
        except Exception as exc:
            raise self._fail(exc) from None

    def trending_counts(
        self, first: int, last: int, limit: int
    ) -> tuple[list[tuple[int, str, float]], int | None]:
        from concurrent.futures import ThreadPoolExecutor

        lo = f"{TRENDING_PREFIX}{first:010d}#"
        hi = f"{TRENDING_PREFIX}{last:010d}#~"  # "~" sorts after every hex digit
        shards = [trending.shard_key(s) for s in range(trending.SHARDS)]
        each = max(1, -(-limit // trending.SHARDS))  # a shard holds 1/SHARDS of the counters
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                pages = list(pool.map(lambda k: self._counters(k, lo, hi, each), shards))
        except Exception as exc:
            raise self._fail(exc) from None
        # A shard cut short was read down to its last row's bucket: newer ones are whole.
        cut = [rows[-1][0] for rows, more in pages if more]
        return [row for rows, _ in pages for row in rows], max(cut) if cut else None

    def _counters(
        self, shard: str, lo: str, hi: str, limit: int
    ) -> tuple[list[tuple[int, str, float]], bool]:
        """The shard's counters, newest buckets first, at most `limit`; and whether more
        were left unread."""
        kwargs: dict = {
            "ScanIndexForward": False,
            "KeyConditionExpression": "user_id = :s AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":s": {"S": shard}, ":lo": {"S": lo}, ":hi": {"S": hi}},
            "ProjectionExpression": "sk, #i, #n",
            "ExpressionAttributeNames": {"#i": "item", "#n": "n"},
        }
        rows: list[tuple[int, str, float]] = []
        while True:
            kwargs["Limit"] = limit - len(rows)
            reply = self._client().query(TableName=self.table, **kwargs)
            for r in reply.get("Items", []):
                bucket = int(r["sk"]["S"][len(TRENDING_PREFIX) :].split("#", 1)[0])
                rows.append((bucket, r["item"]["S"], float(r["n"]["N"])))
            if "LastEvaluatedKey" not in reply:
                return rows, False
            if len(rows) >= limit:
                return rows, True
            kwargs["ExclusiveStartKey"] = reply["LastEvaluatedKey"]

    def _query(self, user_id: str, **kwargs) -> dict:
        return self._client().query(
            TableName=self.table,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            **kwargs,
        )

    def recent(self, user_id: str, limit: int) -> UserItems:
        try:
            reply = self._query(user_id, ScanIndexForward=False, Limit=limit + 1)
        except Exception as exc:
            raise self._fail(exc) from None
        now = time.time()
        history: list[str] = []
        events = []
        for item in reply.get("Items", []):
            if item["sk"]["S"] == HISTORY_SK:
                if "erased" in item:  # an erasure is under way: nothing of theirs is used
                    return UserItems([], [])
                history = json.loads(item["items"]["S"])
            elif "item_id" in item:
                # TTL deletes lazily (within days): an expired event is no longer used
                if "expires_at" in item and float(item["expires_at"]["N"]) <= now:
                    continue
                events.append(item["item_id"]["S"])
        return UserItems(history, events[:limit][::-1])

    def put_histories(
        self, histories: Iterable[tuple[str, Sequence[str]]], threads: int = 8
    ) -> int:
        now = repr(time.time())
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "user_id": {"S": user},
                        "sk": {"S": HISTORY_SK},
                        "items": {"S": history_json(items)},
                        "updated_at": {"N": now},
                    }
                }
            }
            for user, items in histories
        ]
        self._write(requests, threads)
        return len(requests)

    def delete_user_until(
        self, user_id: str, stop_at: float | None = None, threads: int = 8
    ) -> tuple[int, bool]:
        """Every record of the user's partition. A user with more than one batch of records
        first gets an "erased" history record, which serving reads as no history and no
        events: the next request knows them no more, however many events are left when
        `stop_at` comes. The events then go in parallel batches of 25; the marker last (the
        deletion job's delete, without a deadline, takes what is left)."""
        try:
            keys, start = self._keys(user_id, None)
            if not keys:
                return 0, True
            if not start and len(keys) <= BATCH:  # the usual user: one call
                return (len(keys), True) if self._write_batch(keys, stop_at) else (0, False)
            if not self._write_batch([self._marker(user_id)], stop_at):
                return 0, False
            deleted, complete = 0, True
            while True:
                events = [k for k in keys if k["DeleteRequest"]["Key"]["sk"]["S"] != HISTORY_SK]
                deleted += len(keys) - len(events)  # the history, now the marker
                done, complete = self._delete_keys(events, stop_at, threads)
                deleted += done
                if not complete or not start:
                    break
                if stop_at is not None and time.monotonic() >= stop_at:
                    return deleted, False
                keys, start = self._keys(user_id, start)
            if complete:
                complete = self._write_batch([self._delete_history(user_id)], stop_at)
            return deleted, complete
        except UserStoreUnavailable:
            raise
        except Exception as exc:
            raise self._fail(exc) from None

    def _keys(self, user_id: str, start: dict | None) -> tuple[list[dict], dict | None]:
        """One page of the user's record keys as delete requests, and where the next starts."""
        # pages of DELETE_PAGE keys: the first deletes start after a short read, whatever
        # the user's size (a page is otherwise up to 1 MB: some 15,000 keys)
        kwargs: dict = {"ProjectionExpression": "user_id, sk", "Limit": DELETE_PAGE}
        if start:
            kwargs["ExclusiveStartKey"] = start
        reply = self._query(user_id, **kwargs)
        keys = [
            {"DeleteRequest": {"Key": {"user_id": i["user_id"], "sk": i["sk"]}}}
            for i in reply.get("Items", [])
        ]
        return keys, reply.get("LastEvaluatedKey")

    @staticmethod
    def _marker(user_id: str) -> dict:
        item = {"user_id": {"S": user_id}, "sk": {"S": HISTORY_SK}, "items": {"S": "[]"}}
        return {"PutRequest": {"Item": {**item, "erased": {"BOOL": True}}}}

    @staticmethod
    def _delete_history(user_id: str) -> dict:
        return {"DeleteRequest": {"Key": {"user_id": {"S": user_id}, "sk": {"S": HISTORY_SK}}}}

    def _delete_keys(self, keys: list[dict], stop_at: float | None, threads: int):
        """(deleted, all of them): batches in parallel (each call waits on the network, so
        threads multiply the rate a slow table allows)."""
        batches = [keys[i : i + BATCH] for i in range(0, len(keys), BATCH)]
        if not batches:
            return 0, True
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            done = list(pool.map(lambda b: self._write_batch(b, stop_at), batches))
        return sum(len(b) for b, ok in zip(batches, done, strict=True) if ok), all(done)


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)  # botocore's ClientError
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def parse_uri(uri: str) -> tuple[str, str]:
    """("dynamodb", table) or ("sqlite", path); UserStoreError for anything else."""
    parsed = urlparse(uri)
    if parsed.scheme == "dynamodb":
        name = parsed.netloc
        if not name or parsed.path.strip("/") or not _table_name_ok(name):
            raise UserStoreError(f"{uri!r}: expected dynamodb://<table name>")
        return "dynamodb", name
    if parsed.scheme == "sqlite":
        path = (parsed.netloc + parsed.path) if parsed.netloc else parsed.path
        if not path:
            raise UserStoreError(f"{uri!r}: expected sqlite:///<path of the database file>")
        return "sqlite", path
    raise UserStoreError(f"{uri!r}: a user store is dynamodb://<table> or sqlite:///<path>")


def _table_name_ok(name: str) -> bool:
    return 3 <= len(name) <= 255 and all(c.isalnum() or c in "_.-" for c in name)


def open_user_store(uri: str) -> UserStore:
    kind, where = parse_uri(uri)
    return DynamoUserStore(where) if kind == "dynamodb" else SqliteUserStore(where)
