"""The retry logic of an event post's transaction (lmrec.event_writes): conflicts with a
concurrent transaction cannot be produced on moto (it serialises calls), so a unit test
injects DynamoDB's TransactionCanceledException before handing the call to moto."""

from __future__ import annotations

import logging
import time

import pytest
from botocore.exceptions import ClientError
from lmrec import trending
from lmrec.event_writes import (
    COUNT_TRIES,
    FULL_TRIES,
    PostWriter,
    Trending,
    cancellation_codes,
)
from lmrec.events import Event
from lmrec.userstore import DynamoUserStore, _unique

DAY = 86400


def canceled(codes: list[str], structured: bool = True) -> ClientError:
    """DynamoDB's answer to a cancelled transaction, as botocore parses it."""
    message = "Transaction cancelled, please refer cancellation reasons for specific reasons "
    response: dict = {
        "Error": {
            "Code": "TransactionCanceledException",
            "Message": f"{message}[{', '.join(codes)}]",
        }
    }
    if structured:
        response["CancellationReasons"] = [{"Code": c} for c in codes]
    return ClientError(response, "TransactWriteItems")


class Conflicts:
    """transact_write_items that answers TransactionConflict on each trending counter the
    first `times` calls, then sends to moto; it records what each call held."""

    def __init__(self, store: DynamoUserStore, times: int):
        self.store, self.times, self.calls = store, times, []

    def __call__(self, TransactItems: list[dict]) -> None:
        self.calls.append(TransactItems)
        if len(self.calls) <= self.times:
            keys = [a.get("Update", a.get("Put", {})) for a in TransactItems]
            hot = ["TransactionConflict" if _is_counter(k) else "None" for k in keys]
            raise canceled(hot)
        self.store._client().transact_write_items(TransactItems=TransactItems)


def _is_counter(action: dict) -> bool:
    return action.get("Key", {}).get("sk", {}).get("S", "").startswith("t#")


def _trending_total(store: DynamoUserStore, now: float) -> float:
    b = trending.bucket_of(now)
    return sum(n for _, _, n in store.trending_counts(b, b, 1000)[0])


@pytest.fixture
def dynamo(user_store):
    if not isinstance(user_store, DynamoUserStore):
        pytest.skip("DynamoDB's transactions")
    return user_store


@pytest.mark.parametrize("user_store", ["dynamodb"], indirect=True)
def test_a_conflict_is_retried_on_another_shard_and_counts_once(dynamo, monkeypatch):
    now = time.time()
    events = _unique([Event("u", "a", now), Event("v", "a", now)])
    send = Conflicts(dynamo, times=2)
    pauses: list[float] = []
    writer = PostWriter(dynamo.table, send, dynamo._store_uncounted, sleep=pauses.append)
    writer.write(events, str(int(now) + DAY), Trending(now, 2 * DAY))
    # THEN three calls (two cancelled), with jittered pauses of a bounded length
    assert len(send.calls) == 3 and len(pauses) == 2 and all(0 <= p <= 1.0 for p in pauses)
    assert all(len(c) == 2 + 2 + 1 for c in send.calls)  # two events, two counts, one counter
    assert {i: c.count for i, c in dynamo.item_counts("u").items()} == {"a": 1}
    assert _trending_total(dynamo, now) == 2.0


@pytest.mark.parametrize("user_store", ["dynamodb"], indirect=True)
def test_endless_conflicts_drop_trending_then_store_the_events_uncounted(dynamo, caplog):
    now = time.time()
    events = _unique([Event("u", "a", now), Event("u", "b", now)])

    def always(TransactItems: list[dict]) -> None:
        calls.append(TransactItems)
        raise canceled(["TransactionConflict"] * len(TransactItems))

    calls: list[list[dict]] = []
    writer = PostWriter(dynamo.table, always, dynamo._store_uncounted, sleep=lambda _: None)
    with caplog.at_level(logging.WARNING):
        writer.write(events, str(int(now) + DAY), Trending(now, 2 * DAY))
    # THEN FULL_TRIES with the trending counters, COUNT_TRIES without, then the events alone
    assert len(calls) == FULL_TRIES + COUNT_TRIES
    assert [len(c) for c in calls] == [6] * FULL_TRIES + [4] * COUNT_TRIES
    assert sorted(dynamo.recent("u", 5).events) == ["a", "b"]  # stored: never lost
    assert dynamo.item_counts("u") == {} and _trending_total(dynamo, now) == 0.0
    assert "trending counters left out" in caplog.text and "stored uncounted" in caplog.text


@pytest.mark.parametrize("user_store", ["dynamodb"], indirect=True)
def test_an_error_that_is_no_conflict_is_raised_and_stores_nothing(dynamo):
    from lmrec.userstore import UserStoreUnavailable

    def invalid(TransactItems: list[dict]) -> None:
        raise canceled(["ValidationError"] + ["None"] * (len(TransactItems) - 1))

    writer = PostWriter(dynamo.table, invalid, dynamo._store_uncounted, sleep=lambda _: None)
    with pytest.raises(ClientError):
        writer.write(_unique([Event("u", "a", 1.0)]), "9999999999", None)
    # AND through the store: unavailable (the route answers 503, the client retries)
    dynamo._transact = invalid  # type: ignore[method-assign]
    with pytest.raises(UserStoreUnavailable):
        dynamo.put_events([Event("u", "a", 1.0)], DAY)
    assert dynamo.recent("u", 5).events == []


def test_cancellation_codes_come_from_the_reasons_or_the_message():
    assert cancellation_codes(canceled(["None", "ConditionalCheckFailed"])) == [
        "None",
        "ConditionalCheckFailed",
    ]
    assert cancellation_codes(canceled(["TransactionConflict", "None"], structured=False)) == [
        "TransactionConflict",
        "None",
    ]
    other = ClientError({"Error": {"Code": "ValidationException", "Message": "x"}}, "Op")
    assert cancellation_codes(other) is None and cancellation_codes(ValueError("x")) is None
