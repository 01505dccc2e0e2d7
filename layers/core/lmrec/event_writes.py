"""An event post written to DynamoDB so that each event is stored, and counted (the user's
per-item count and the trending counter), exactly once, however often it is delivered.

One TransactWriteItems per post (per 100 actions: DynamoDB's limit): for each distinct event
a Put conditioned on the event not being stored yet, for each distinct (user, item) one
Update of its count, for each distinct trending item one Update of its counter. Several
events of one (user, item) or one item are merged into one action (no two actions of a
transaction may name the same item). A transaction is all or nothing, so a count is never
added without its event and never added twice:

- a Put whose event is stored already (a retried post) fails its condition and cancels the
  transaction; the cancellation reasons name it by position, and the transaction is sent
  again without it (and without its counts);
- the count's Update sets last_seen only under `last_seen <= :t`; a late event (older than
  the newest counted one) fails that condition, and the retry adds its count without
  touching last_seen: last_seen = max(old, new), exactly, with no read;
- a conflict with a concurrent transaction on the same record (a hot trending counter) is
  retried after a jittered pause with a new shard; after FULL_TRIES the trending counters
  are left out (a lost trending count is noise, logged), after COUNT_TRIES more the events
  are stored uncounted (BatchWriteItem, logged): a post never fails for a conflict.

Each cancelled round removes a cause (an event, or a condition), so the rounds are bounded.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lmrec import trending
from lmrec.events import Event

log = logging.getLogger(__name__)
COUNT_PREFIX = "c#"
TRENDING_PREFIX = "t#"
TRANSACTION = 100  # TransactWriteItems: at most 100 actions per call
FULL_TRIES = 3  # conflicts with the trending counters in the transaction
COUNT_TRIES = 3  # then conflicts without them (the same user's item posted concurrently)
RETRYABLE = {"TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError"}
Key = tuple[str, str]  # an event record's (user_id, sk)


@dataclass(frozen=True)
class Trending:
    """Count the post's events as trending at `now` (arrival) for a window of this length."""

    now: float
    window_seconds: float


def digest(text: str) -> str:
    # Keys hold a digest, the id an attribute: a sort key is at most 1,024 bytes, an id
    # 256 characters of up to 4 bytes each.
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def per_user_item(events: Iterable[Event]) -> dict[tuple[str, str], tuple[int, float]]:
    """(user, item) -> (events, newest timestamp), of distinct events."""
    out: dict[tuple[str, str], tuple[int, float]] = {}
    for e in events:
        n, newest = out.get((e.user_id, e.item_id), (0, -math.inf))
        out[(e.user_id, e.item_id)] = (n + 1, max(newest, float(e.timestamp)))
    return out


def per_item(events: Iterable[Event], now: float) -> dict[str, int]:
    """item -> events that count as trending at `now`."""
    out: dict[str, int] = {}
    for e in events:
        if trending.counted(e.timestamp, now):
            out[e.item_id] = out.get(e.item_id, 0) + 1
    return out


def chunks(unique: dict[Key, Event], trend: Trending | None) -> list[dict[Key, Event]]:
    """The events in groups whose actions (a Put each, an Update per distinct (user, item)
    and per distinct trending item) fit one transaction; a (user, item)'s events stay
    together where they fit, so a one-item post is one transaction."""
    out: list[dict[Key, Event]] = []
    size = TRANSACTION  # the first event opens a chunk
    pairs: set[tuple[str, str]] = set()
    items: set[str] = set()
    for key, e in sorted(unique.items(), key=lambda kv: (kv[0][0], kv[1].item_id, kv[0][1])):
        pair = (e.user_id, e.item_id)
        counted = trend is not None and trending.counted(e.timestamp, trend.now)
        cost = 1 + (pair not in pairs) + (counted and e.item_id not in items)
        if size + cost > TRANSACTION:
            out.append({})
            size, pairs, items = 0, set(), set()  # (the first event's pair and item: new)
            cost = 2 + counted
        out[-1][key] = e
        size += cost
        pairs.add(pair)
        if counted:
            items.add(e.item_id)
    return out


def cancellation_codes(exc: Exception) -> list[str] | None:
    """The per-action codes of a TransactionCanceledException ("None" where the action was
    fine), in the order of the actions; None for any other error. botocore parses
    CancellationReasons (its service model has them); the message lists them too."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error", {})
    if error.get("Code") != "TransactionCanceledException":
        return None
    reasons = response.get("CancellationReasons")
    if reasons:
        return [str(r.get("Code") or "None") for r in reasons]
    listed = re.search(r"\[([^\]]*)\]\s*$", str(error.get("Message", "")))
    return [c.strip() for c in listed.group(1).split(",")] if listed else None


class PostWriter:
    """One post's chunk: actions built, sent, and rebuilt from what a cancellation says."""

    def __init__(
        self,
        table: str,
        send: Callable[..., object],
        store_uncounted: Callable[[list[dict]], None],
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.table = table
        self.send = send  # the client's transact_write_items
        self.store_uncounted = store_uncounted  # events only, idempotent (BatchWriteItem)
        self.sleep = sleep

    def write(self, chunk: dict[Key, Event], expires: str, trend: Trending | None) -> None:
        pending = dict(chunk)
        late: set[tuple[str, str]] = set()  # pairs whose stored last_seen is newer
        shard = random.randrange(trending.SHARDS)
        conflicts = 0
        while pending:
            tagged = self._actions(pending, expires, late, trend, shard)
            try:
                self.send(TransactItems=[action for _, action in tagged])
                return
            except Exception as exc:
                codes = cancellation_codes(exc)
                if codes is None or len(codes) != len(tagged):
                    raise
                failed = [tag for (tag, _), c in zip(tagged, codes, strict=True) if c == _CCF]
                if failed:  # a redelivered event, or a late one: drop the cause, send again
                    for kind, key in failed:
                        if kind == "event":
                            pending.pop(key)
                        else:
                            late.add(key)
                    continue
                if not set(codes) & RETRYABLE:
                    raise
            conflicts += 1
            if conflicts >= FULL_TRIES + COUNT_TRIES:
                log.warning(
                    "%d events stored uncounted after %d conflicts", len(pending), conflicts
                )
                now = repr(time.time())
                self.store_uncounted(
                    [self._put(key, e, expires, now)["Item"] for key, e in pending.items()]
                )
                return
            if conflicts == FULL_TRIES and trend is not None:
                log.warning("trending counters left out after %d conflicts", conflicts)
                trend = None
            shard = random.randrange(trending.SHARDS)  # another partition's counters
            self.sleep(random.uniform(0, min(1.0, 0.025 * 2**conflicts)))  # full jitter

    def _actions(
        self,
        events: dict[Key, Event],
        expires: str,
        late: set[tuple[str, str]],
        trend: Trending | None,
        shard: int,
    ) -> list[tuple[tuple[str, Key], dict]]:
        """(what it is, action) of each action: ("event", (user, sk)), ("count", (user, item)),
        ("trending", (item, ""))."""
        now = repr(time.time())
        out: list[tuple[tuple[str, Key], dict]] = [
            (("event", key), {"Put": self._put(key, e, expires, now)}) for key, e in events.items()
        ]
        for pair, (n, newest) in per_user_item(events.values()).items():
            update = self._count(pair, n, newest, expires, pair in late)
            out.append((("count", pair), {"Update": update}))
        if trend is not None:
            bucket = trending.bucket_of(trend.now)
            keep = str(trending.expires_at(bucket, trend.window_seconds))
            for item, n in per_item(events.values(), trend.now).items():
                update = self._counter(trending.shard_key(shard), bucket, item, n, keep)
                out.append((("trending", (item, "")), {"Update": update}))
        return out

    def _put(self, key: Key, e: Event, expires: str, now: str) -> dict:
        # TTL deletes lazily (within days): an expired event counts as not stored
        return {
            "TableName": self.table,
            "Item": {
                "user_id": {"S": key[0]},
                "sk": {"S": key[1]},
                "item_id": {"S": e.item_id},
                "event_type": {"S": e.event_type},
                "ts": {"N": repr(float(e.timestamp))},
                "expires_at": {"N": expires},
            },
            "ConditionExpression": "attribute_not_exists(sk) OR expires_at <= :now",
            "ExpressionAttributeValues": {":now": {"N": now}},
        }

    def _count(
        self, pair: tuple[str, str], n: int, newest: float, expires: str, late: bool
    ) -> dict:
        user, item = pair
        update: dict = {
            "TableName": self.table,
            "Key": {"user_id": {"S": user}, "sk": {"S": COUNT_PREFIX + digest(item)}},
            "ExpressionAttributeNames": {
                "#n": "n",
                "#i": "item",
                "#x": "expires_at",
                "#t": "last_seen",
            },
            "ExpressionAttributeValues": {
                ":n": {"N": str(n)},
                ":i": {"S": item},
                ":x": {"N": expires},
                ":t": {"N": repr(newest)},
            },
        }
        if late:  # the stored last_seen is newer: kept (set only if the record went meanwhile)
            return {
                **update,
                "UpdateExpression": "ADD #n :n SET #i = :i, #x = :x, #t = if_not_exists(#t, :t)",
            }
        return {  # in order (the usual case): last_seen moves on, under a condition
            **update,
            "UpdateExpression": "ADD #n :n SET #i = :i, #x = :x, #t = :t",
            "ConditionExpression": "attribute_not_exists(#t) OR #t <= :t",
        }

    def _counter(self, shard: str, bucket: int, item: str, n: int, expires: str) -> dict:
        return {
            "TableName": self.table,
            "Key": {
                "user_id": {"S": shard},
                "sk": {"S": f"{TRENDING_PREFIX}{bucket:010d}#{digest(item)}"},
            },
            "UpdateExpression": "ADD #n :n SET #i = :i, #x = :x",
            "ExpressionAttributeNames": {"#n": "n", "#i": "item", "#x": "expires_at"},
            "ExpressionAttributeValues": {
                ":n": {"N": str(n)},
                ":i": {"S": item},
                ":x": {"N": expires},
            },
        }


_CCF = "ConditionalCheckFailed"
