"""The user store (sqlite3 and DynamoDB on moto), the history sync and its diff."""

from __future__ import annotations

import time

import numpy as np
import pytest
from lmrec.events import Event
from lmrec.userstore import (
    HISTORY_SK,
    MAX_RECORD_BYTES,
    DynamoUserStore,
    UserStoreError,
    UserStoreUnavailable,
    event_key,
    history_json,
    open_user_store,
    parse_uri,
)

from tests.conftest import write_csv
from training import histories
from training.config import DataConfig
from training.data import load_interactions

DAY = 86400


def test_one_query_returns_history_and_newest_events(user_store):
    user_store.put_histories([("u1", ["a", "b", "c"]), ("u2", ["x"])])
    events = [Event("u1", f"e{i}", 1_700_000_000 + i) for i in range(8)]
    assert user_store.put_events(events, DAY) == 8
    got = user_store.recent("u1", 3)
    assert got.history == ["a", "b", "c"] and got.events == ["e5", "e6", "e7"]
    assert got.items() == ["a", "b", "c", "e5", "e6", "e7"]
    assert user_store.recent("u2", 3).items() == ["x"]
    assert user_store.recent("nobody", 3).items() == []
    # events only (no history record yet): the newest `limit`, oldest first
    user_store.put_events([Event("u3", "p", 10.0), Event("u3", "q", 20.0)], DAY)
    assert user_store.recent("u3", 5).events == ["p", "q"]


def test_duplicate_events_are_stored_once(user_store):
    e = Event("u1", "i1", 1_700_000_000.5, "watch")
    # ten times in one call (one BatchWriteItem may not name a key twice) and again later
    user_store.put_events([e] * 10, DAY)
    user_store.put_events([e], DAY)
    other_type = Event("u1", "i1", 1_700_000_000.5, "buy")
    user_store.put_events([other_type], DAY)
    assert user_store.recent("u1", 50).events == ["i1", "i1"]  # watch once, buy once
    assert event_key(e) == event_key(Event("u1", "i1", 1_700_000_000.5, "watch"))
    assert event_key(e) != event_key(other_type)
    assert event_key(e) < HISTORY_SK  # the history record sorts after every event


def test_delete_user_removes_the_whole_partition(user_store):
    user_store.put_histories([("u1", ["a"]), ("u2", ["b"])])
    user_store.put_events([Event("u1", f"e{i}", 100.0 + i) for i in range(30)], DAY)
    assert user_store.delete_user("u1") == 61  # history, 30 events, 30 item counts
    assert user_store.recent("u1", 50).items() == []
    assert user_store.recent("u2", 50).items() == ["b"]  # nobody else's
    assert user_store.delete_user("u1") == 0


def test_expired_events_are_not_used(user_store):
    user_store.put_events([Event("u1", "old", 100.0)], -1)  # already past its TTL
    assert user_store.recent("u1", 5).events == []


def test_histories_overwrite_and_ids_stay_exact(user_store):
    user_store.put_histories([(" 1 ", ["007", "7", "ü/x"]), ("1", ["a"])])
    user_store.put_histories([("1", ["b", "c"])])
    assert user_store.recent(" 1 ", 0).history == ["007", "7", "ü/x"]
    assert user_store.recent("1", 0).history == ["b", "c"]


def test_a_history_record_fits_dynamodb_item_limit():
    items = [f"{'x' * 200}{i}" for i in range(5000)]  # about 1 MB of ids
    text = history_json(items)
    assert len(text.encode()) <= MAX_RECORD_BYTES
    kept = __import__("json").loads(text)
    assert kept == items[-len(kept) :]  # the newest survive


@pytest.mark.parametrize(
    "uri",
    ["", "redis://x", "dynamodb://", "dynamodb://a", "dynamodb://t/extra", "sqlite://", "t"],
)
def test_bad_store_uris_are_refused(uri):
    with pytest.raises(UserStoreError):
        parse_uri(uri)


def test_settings_refuse_a_bad_user_store(monkeypatch):
    from lmrec.settings import Settings
    from pydantic import ValidationError

    for name in ("LMREC_USER_STORE", "LMREC_ERASURE_URI"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(ValidationError, match="LMREC_USER_STORE"):
        Settings(user_store="mysql://x")
    assert Settings().user_store_uri() == ""
    assert Settings(user_store="dynamodb://users").user_store_uri() == "dynamodb://users"
    assert Settings(user_store="sqlite:///x.db").user_store_uri() == "sqlite:///x.db"


def test_an_unreachable_table_is_unavailable_not_a_crash(s3_env):
    store = DynamoUserStore("no-such-table")
    with pytest.raises(UserStoreUnavailable):
        store.recent("u", 5)
    with pytest.raises(UserStoreUnavailable):
        store.put_events([Event("u", "i", 1.0)], DAY)


# -- the history sync -----------------------------------------------------------------------
def _data(tmp_path, rows, name="d.csv"):
    path = write_csv(tmp_path / name, ["user_id", "item_id", "timestamp"], rows)
    return load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))


def _rows(users: int, per_user: int, shift: int = 0):
    return [
        [f"user-{u}", f"it-{(u + j + shift) % 50}", 1000 + j]
        for u in range(users)
        for j in range(per_user)
    ]


def test_sync_writes_only_changed_users(tmp_path):
    store = open_user_store(f"sqlite://{tmp_path / 'u.db'}")
    state = f"file://{tmp_path / 'state.npz'}"
    rows = _rows(40, 5)
    first = histories.sync(_data(tmp_path, rows), store, state, history_length=3)
    assert first["written"] == 40 and first["first_sync"]
    assert store.recent("user-7", 0).history == ["it-9", "it-10", "it-11"]  # newest 3
    again = histories.sync(_data(tmp_path, rows), store, state, history_length=3)
    assert again["written"] == 0 and not again["first_sync"]
    # user-7 gets a newer item; user-8 an OLDER one (outside the newest 3: no change);
    # a new user arrives
    more = [["user-7", "it-40", 5000], ["user-8", "it-45", 1], ["user-new", "it-1", 7]]
    third = histories.sync(_data(tmp_path, rows + more), store, state, history_length=3)
    assert third["written"] == 2
    assert store.recent("user-7", 0).history == ["it-10", "it-11", "it-40"]
    assert store.recent("user-new", 0).history == ["it-1"]
    # another length or another store: everyone again
    assert histories.sync(_data(tmp_path, rows), store, state, history_length=4)["written"] == 40


def test_sync_skips_users_with_a_pending_erasure(tmp_path):
    from lmrec import erasure

    store = open_user_store(f"sqlite://{tmp_path / 'u.db'}")
    root = f"file://{tmp_path / 'erasure'}"
    erasure.record(root, "user-3")
    got = histories.sync(
        _data(tmp_path, _rows(10, 4)), store, f"file://{tmp_path / 's.npz'}", 10, root
    )
    assert got["written"] == 9 and got["skipped_erased"] == 1
    assert store.recent("user-3", 0).history == []


def test_fingerprints_see_order_and_window(tmp_path):
    a = _data(tmp_path, [["u", "x", 1], ["u", "y", 2]], "a.csv")
    b = _data(tmp_path, [["u", "y", 1], ["u", "x", 2]], "b.csv")
    ka, ha, _ = histories.fingerprints(a, 10)
    kb, hb, _ = histories.fingerprints(b, 10)
    assert ka[0] == kb[0] and ha[0] != hb[0]
    c = _data(tmp_path, [["u", "z", 0], ["u", "x", 1], ["u", "y", 2]], "c.csv")
    assert histories.fingerprints(c, 2)[1][0] == histories.fingerprints(a, 2)[1][0]
    assert histories.fingerprints(c, 3)[1][0] != histories.fingerprints(a, 3)[1][0]


def test_state_file_holds_no_user_id(tmp_path):
    store = open_user_store(f"sqlite://{tmp_path / 'u.db'}")
    state = tmp_path / "state.npz"
    histories.sync(_data(tmp_path, _rows(30, 3)), store, f"file://{state}", 5)
    import zipfile

    with zipfile.ZipFile(state) as z:
        raw = b"".join(z.read(n) for n in z.namelist())
    assert b"user-" not in raw
    keys = np.load(state)["keys"]
    assert len(keys) == 30 and (keys[1:] > keys[:-1]).all()


def test_the_same_event_posted_ten_times_counts_once(api):
    from tests.conftest import call

    _, before = call(api, "api_post_recommendations.json", body={"user_id": "5", "k": 5})
    event = {"user_id": "5", "item_id": "50", "timestamp": 1_700_000_000, "event_type": "watch"}
    for _ in range(10):
        assert call(api, "api_post_events.json", body={"events": [event]})[0] == 202
    assert call(api, "api_post_events.json", body={"events": [event] * 10})[0] == 202
    _, after = call(api, "api_post_recommendations.json", body={"user_id": "5", "k": 5})
    assert after["history_length"] == before["history_length"] + 1


# -- each event counted once (issue 28: the user's item counts and trending) ---------------
def _trending(store, now: float) -> dict[str, float]:
    from lmrec import trending

    bucket = trending.bucket_of(now)
    out: dict[str, float] = {}
    for _, item, n in store.trending_counts(bucket, bucket, 10_000)[0]:
        out[item] = out.get(item, 0.0) + n
    return out


def _counts(store, user: str) -> dict[str, tuple[int, float]]:
    return {i: (c.count, c.last_seen) for i, c in store.item_counts(user).items()}


def test_a_retried_post_counts_once_for_the_user_and_in_trending(user_store):
    from lmrec.event_writes import Trending

    now = time.time()
    trend = Trending(now, 2 * DAY)
    body = [Event("u1", "a", now - 5), Event("u1", "b", now - 4), Event("u2", "a", now - 3)]
    for _ in range(3):  # the client's retry, and a Lambda retry of it
        assert user_store.put_events(body, DAY, trend) == 3
    assert _counts(user_store, "u1") == {"a": (1, now - 5), "b": (1, now - 4)}
    assert _trending(user_store, now) == {"a": 2.0, "b": 1.0}
    # AND a post that repeats some events and brings a new one counts only the new one
    user_store.put_events([*body, Event("u1", "a", now - 1)], DAY, trend)
    assert _counts(user_store, "u1") == {"a": (2, now - 1), "b": (1, now - 4)}
    assert _trending(user_store, now) == {"a": 3.0, "b": 1.0}


def test_a_late_event_counts_and_last_seen_stays_the_newest(user_store):
    from lmrec.event_writes import Trending

    now = time.time()
    trend = Trending(now, 2 * DAY)
    user_store.put_events([Event("u1", "a", now - 10)], DAY, trend)
    # WHEN an older event of the same item arrives (a queue delivering late), twice
    for _ in range(2):
        user_store.put_events([Event("u1", "a", now - 600)], DAY, trend)
    # THEN it counts, once, and last_seen is still the newest event's time
    assert _counts(user_store, "u1") == {"a": (2, now - 10)}
    assert _trending(user_store, now) == {"a": 2.0}
    # AND a post mixing a late and a newer event of the item moves last_seen on
    user_store.put_events([Event("u1", "a", now - 900), Event("u1", "a", now - 2)], DAY, trend)
    assert _counts(user_store, "u1") == {"a": (4, now - 2)}


def test_several_events_of_one_user_and_item_and_of_one_trending_counter(user_store):
    from lmrec.event_writes import Trending

    now = time.time()
    trend = Trending(now, 2 * DAY)
    # one post: three plays of "a" by u1 (one of them sent twice), "a" by two more users
    # in the same millisecond (different records), "b" once
    post = [Event("u1", "a", now - 30), Event("u1", "a", now - 20), Event("u1", "a", now - 20)]
    post += [Event("u1", "a", now - 25, "like"), Event("u2", "a", now), Event("u3", "a", now)]
    post += [Event("u1", "b", now - 7)]
    assert user_store.put_events(post, DAY, trend) == 6
    assert _counts(user_store, "u1") == {"a": (3, now - 20), "b": (1, now - 7)}
    assert _counts(user_store, "u2") == {"a": (1, now)} == _counts(user_store, "u3")
    assert _trending(user_store, now) == {"a": 5.0, "b": 1.0}
    assert user_store.recent("u1", 10).events == ["a", "a", "a", "b"]


def test_a_post_over_one_transaction_counts_every_event_once(user_store):
    from lmrec.event_writes import Trending, chunks

    # 55 events, 101 actions: 30 of one user over 10 items (3 each), 25 users on one item
    now = time.time()
    trend = Trending(now, 2 * DAY)
    post = [Event("u", f"i{n % 10}", now - n) for n in range(30)]
    post += [Event(f"v{n}", "hot", now) for n in range(25)]
    post += [Event("w", "old", now - 7200)]  # dated 2 h before it arrived: not trending
    parts = chunks({(e.user_id, f"{e.item_id}{e.timestamp}"): e for e in post}, trend)
    assert len(parts) > 1  # (on DynamoDB: more than one transaction of <= 100 actions)
    for _ in range(2):
        assert user_store.put_events(post, DAY, trend) == 56
    assert _counts(user_store, "u") == {f"i{k}": (3, now - k) for k in range(10)}
    assert _counts(user_store, "v7") == {"hot": (1, now)}
    assert _counts(user_store, "w") == {"old": (1, now - 7200)}
    assert _trending(user_store, now) == {**{f"i{k}": 3.0 for k in range(10)}, "hot": 25.0}
    # AND the user's counts go with the user
    user_store.delete_user("u")
    assert user_store.item_counts("u") == {} and user_store.recent("u", 5).items() == []
