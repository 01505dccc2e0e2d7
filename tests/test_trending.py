"""What is popular now (issue 28, item 5): counters written by the events route, GET
/v1/trending on the local stack (moto server), its bad inputs, its IAM, and the cold start."""

from __future__ import annotations

import os
import time
from urllib.parse import urlencode

import boto3
import numpy as np
import pytest
from lmrec import trending
from lmrec.event_writes import Trending
from lmrec.events import Event
from lmrec.trending import TrendingCounts
from lmrec.userstore import DynamoUserStore, open_user_store

from tests.aws_calls import judge, role_statements
from tests.conftest import call, load_template
from tests.sam_template import env_names
from tests.test_iam import without_statement

HOUR = 3600
DAY = 86400


def seed(store, item: str, n: int, at: float) -> None:
    """n events of `item` by n users, posted at `at` (distinct events: each counts once)."""
    store.put_events([Event(f"s{u}", item, at) for u in range(n)], DAY, Trending(at, 48 * HOUR))


def get(api, query: dict | str):
    q = query if isinstance(query, str) else urlencode(query, doseq=True)
    return call(api, "api_get_trending.json", query=q)


def post(api, events: list[dict]) -> None:
    status, body = call(api, "api_post_events.json", body={"events": events})
    assert status == 202, body


def ids(reply: dict) -> list[str]:
    return [i["item_id"] for i in reply["items"]]


def prior_order(api) -> list[str]:
    """The catalog's ids by the trending prior, the answer before any live event."""
    rec = api.state.recommender
    rows = np.argsort(-rec.bundle.trending_prior[1:], kind="stable") + 1
    return [str(rec.catalog.item_ids[r - 1]) for r in rows]


@pytest.fixture
def short_cache(monkeypatch):
    monkeypatch.setenv("LMREC_TRENDING_CACHE_SECONDS", "2")


@pytest.fixture
def store(api):
    return open_user_store(os.environ["LMREC_USER_STORE"])


def test_an_event_trends_within_a_minute_and_decays(
    short_cache, api, store, aws_calls_allowed_by_template
):
    # GIVEN counters from 10 and 30 hours ago, for items the prior ranks low (the bundle's
    # recent popularity: the training data's counts decayed from its newest row)
    prior = prior_order(api)[:100]
    rising, old, ancient = prior[99], prior[98], prior[97]
    ago = time.time()
    seed(store, old, 10, ago - 10 * HOUR)
    seed(store, ancient, 10, ago - 30 * HOUR)
    # (this instance reads the window now, and the settled buckets never again)
    assert ids(get(api, {"k": 5, "half_life_hours": 1})[1]) == prior[:5]
    # WHEN five users act on an item through the API (one post of several items too)
    calls = aws_calls_allowed_by_template

    def mine(c) -> bool:  # the post's DynamoDB writes: a trending poll's Query may run
        # in its own thread meanwhile (a slow, loaded machine saw one land in the window)
        return c.service == "dynamodb" and c.operation not in {"Query", "GetItem"}

    began = time.monotonic()
    for u in range(5):
        before_post = len(calls)
        post(api, [{"user_id": f"t{u}", "item_id": rising}])
        sent = [c.operation for c in calls[before_post:] if mine(c)]
        # the event, the user's count of the item, the trending counter: ONE transaction
        assert sent == ["TransactWriteItems"], sent
    before_post = len(calls)
    post(api, [{"user_id": "t9", "item_id": i} for i in (rising, prior[0], prior[1])])
    sent = [c.operation for c in calls[before_post:] if mine(c)]
    assert sent == ["TransactWriteItems"], sent
    # THEN GET /v1/trending shows it first within a minute (the cache is 2 s here)
    while True:
        status, reply = get(api, {"k": 5})
        assert status == 200, reply
        if ids(reply)[0] == rising:
            break
        assert time.monotonic() - began < 60, reply
        time.sleep(0.25)
    seen = time.monotonic() - began
    print(f"\nevent posted -> first in GET /v1/trending after {seen:.2f} s (cache 2 s)")
    assert reply["items"][0]["score"] >= 6 and reply["counted_at"]
    # AND counts 10 hours old weigh with a long half-life and decay away with a short one
    assert old in ids(get(api, {"k": 3, "half_life_hours": 24})[1])
    assert old not in ids(get(api, {"k": 5, "half_life_hours": 1})[1])
    # AND counts older than the window (24 h) are not read at all
    assert ancient not in ids(get(api, {"k": 5, "half_life_hours": 24})[1])
    # AND the filters apply as for recommendations
    _, some = get(api, {"k": 5, "exclude_items": [rising]})
    assert rising not in ids(some)
    # AND the API needed exactly the DynamoDB actions its role allows: a transaction is
    # authorised per action, PutItem (the events) and UpdateItem (the counts)
    api_calls = [c for c in calls if c.principal == "ApiFunction"]
    ops = {c.operation for c in api_calls if c.service == "dynamodb"}
    assert {"TransactWriteItems", "Query"} <= ops
    allowed = {
        a
        for st in role_statements("ApiFunction", env_names({}))
        if st.get("Sid") == "UserStore"
        for a in st["Action"]
    }
    assert allowed == {
        "dynamodb:Query",
        "dynamodb:BatchWriteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    assert judge(api_calls)[1] == []
    template = without_statement("ApiFunction", "UserStore")
    failures = "\n".join(judge(api_calls, template=template)[1])
    assert "ApiFunction needs dynamodb:PutItem" in failures
    assert "ApiFunction needs dynamodb:UpdateItem" in failures


BAD = [
    ("k=0", "k"),
    ("k=-3", "k"),
    ("k=101", "k"),
    ("k=ten", "k"),
    ("half_life_hours=0", "half_life_hours must be from 0.1 to 24"),
    ("half_life_hours=-1", "half_life_hours must be from 0.1 to 24"),
    ("half_life_hours=25", "half_life_hours must be from 0.1 to 24"),
    ("half_life_hours=nan", "half_life_hours"),
    ("half_life_hours=inf", "half_life_hours"),
    ("half_life_hours=soon", "half_life_hours"),
    ("genre=Comedy", "unknown query parameter(s): 'genre'"),
    ("k=1&k=50", "k: given 2 times"),
    ("half_life_hours=1&half_life_hours=6", "half_life_hours: given 2 times"),
    ("category=Comedy&k=5", "unknown query parameter(s): 'category'"),
    ("include_categories=NoSuchCategory", "include_categories: none is in the catalog"),
    ("include_categories=", "include_categories"),
    ("exclude_categories=" + "x" * 129, "exclude_categories"),
    ("include_categories=Comedy&" + "&".join(["exclude_categories=a"] * 51), "exclude_categories"),
]


def test_bad_inputs_are_4xx_with_the_error_body(api):
    for query, says in BAD:
        status, body = get(api, query)
        print(f"\nGET /v1/trending?{query[:60]} -> {status} {body}")
        assert status == 422, (query, body)
        assert set(body) == {"detail"} and says in body["detail"], (query, body)


def _cold_start(monkeypatch, api, setting: str) -> None:
    chosen = api.app.state.settings.model_copy(update={"cold_start": setting})
    # setitem on the State's dict: monkeypatch.setattr on a starlette State records no old
    # value (it is not in the instance __dict__), so a second patch would fail its undo
    monkeypatch.setitem(api.app.state._state, "settings", chosen)


def test_a_new_user_gets_what_is_popular_now_when_the_model_or_deployment_says_so(
    short_cache, monkeypatch, api, store
):
    # GIVEN counts for an item all-time popularity ranks low, and a model whose job found
    # all-time popularity ahead on its data (the test bundle's manifest: popular)
    body = {"history": ["no-such-item"], "k": 3}
    popular = {**body, "k": 50}
    rising = ids(call(api, "api_post_recommendations.json", body=popular)[1])[49]
    seed(store, rising, 10, time.time())
    rec = api.state.recommender
    assert api.app.state.settings.cold_start == "auto" and rec.default_cold_start == "popular"
    # WHEN the deployment keeps the default (auto) THEN a new user gets all-time popularity
    _, plain = call(api, "api_post_recommendations.json", body=body)
    assert plain["strategy"] == "popular" and rising not in ids(plain)
    # WHEN the model's job measured "now" ahead (auto follows it) THEN it comes first
    monkeypatch.setattr(rec, "default_cold_start", "trending")
    _, now = call(api, "api_post_recommendations.json", body=body)
    assert now["strategy"] == "trending" and ids(now)[0] == rising, now
    # AND the deployment's explicit setting overrides the model's choice, either way
    _cold_start(monkeypatch, api, "popular")
    _, kept = call(api, "api_post_recommendations.json", body=body)
    assert kept["strategy"] == "popular" and rising not in ids(kept)
    monkeypatch.setattr(rec, "default_cold_start", "popular")
    _cold_start(monkeypatch, api, "trending")
    _, now = call(api, "api_post_recommendations.json", body=body)
    assert now["strategy"] == "trending" and ids(now)[0] == rising, now

    # AND when the live counts cannot be read, trending answers with its prior (the data's
    # recent popularity, as GET /v1/trending does) and says why
    def fail():
        raise RuntimeError("store down")

    monkeypatch.setattr(api.app.state.trending, "snapshot", fail)
    _, down = call(api, "api_post_recommendations.json", body=body)
    assert down["strategy"] == "trending" and ids(down) == prior_order(api)[:3], down
    assert any("live counts were unavailable" in w for w in down["warnings"]), down
    # AND a user with a usable history is personalised as before
    _, warm = call(api, "api_post_recommendations.json", body={"user_id": "2", "k": 3})
    assert warm["strategy"] == "personalized"


def test_counters_merge_shards_skip_backfills_and_settled_buckets_are_read_once(user_store):
    now = time.time()
    events = [Event("a", "x", now), Event("b", "x", now), Event("c", "y", now)]
    user_store.put_events(events, DAY, Trending(now, 48 * HOUR))
    user_store.put_events([Event("d", "x", now - 2 * HOUR)], DAY, Trending(now, 48 * HOUR))
    for u in range(5):  # random shards: the read merges them
        user_store.put_events(
            [Event(f"e{u}", "z", now - HOUR)], DAY, Trending(now - HOUR, 48 * HOUR)
        )
    reads: list[tuple[int, int]] = []

    def read(first: int, last: int, limit: int):
        reads.append((first, last))
        return user_store.trending_counts(first, last, limit)

    # the counters carry the attribute template.yaml's table expires by (TTL)
    ttl = load_template()["Resources"]["UserStoreTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}
    if isinstance(user_store, DynamoUserStore):  # and expire one window after their bucket
        table = boto3.client("dynamodb")
        stamps = [
            float(item["expires_at"]["N"])
            for s in range(trending.SHARDS)
            for item in table.query(
                TableName=user_store.table,
                KeyConditionExpression="user_id = :s",
                ExpressionAttributeValues={":s": {"S": trending.shard_key(s)}},
            )["Items"]
        ]
        assert len(stamps) >= 3 and all(now + 47 * HOUR < t < now + 49 * HOUR for t in stamps)
    counts = TrendingCounts(read, 48 * HOUR, cache_seconds=0)
    scores = counts.snapshot().scores(now, HOUR)
    # (counted at `now`, in a bucket up to 300 s old: taken as up to 150 s old)
    fresh = 2 ** (-(now - trending.bucket_of(now) * trending.BUCKET_SECONDS) / 2 / HOUR)
    assert scores["x"] == pytest.approx(2 * fresh) and scores["y"] == pytest.approx(fresh)
    assert scores["z"] == pytest.approx(5 * 0.5, rel=0.05)  # an hour old, half-life an hour
    counts.snapshot()
    # the second read starts at the first bucket not yet settled, not at the window's start
    assert reads[0][0] == trending.bucket_of(reads[0][0] * trending.BUCKET_SECONDS)
    assert reads[1][0] >= trending.bucket_of(now - 2 * trending.BUCKET_SECONDS)


def test_item_counts_keep_count_and_last_seen_count_a_retry_once_and_go_with_the_user(
    user_store,
):
    t = 1_790_000_000.0
    first = [Event("u1", "a", t), Event("u1", "a", t + 60), Event("u1", "b", t + 5)]
    user_store.put_events(first, 86400 * 365 * 10)
    user_store.put_events(first, 86400 * 365 * 10)  # a retried post
    user_store.put_events([Event("u1", "a", t + 120)], 86400 * 365 * 10)
    counts = user_store.item_counts("u1")
    assert {i: (c.count, c.last_seen) for i, c in counts.items()} == {
        "a": (3, t + 120),
        "b": (1, t + 5),
    }
    assert user_store.recent("u1", 10).events == ["a", "b", "a", "a"]  # counts are no events
    user_store.delete_user("u1")
    assert user_store.item_counts("u1") == {} and user_store.recent("u1", 10).items() == []


def test_a_post_the_store_cannot_take_is_503_and_its_retry_counts_once(api, store):
    from botocore.exceptions import EndpointConnectionError
    from lmrec import events

    def down(**_):
        raise EndpointConnectionError(endpoint_url="https://dynamodb.example")

    body = {"events": [{"user_id": "c1", "item_id": i, "timestamp": 1.79e9} for i in ("50", "181")]}
    client = events._client()
    client.meta.events.register("before-send.dynamodb.TransactWriteItems", down)
    try:  # WHEN the one transaction cannot be sent
        status, reply = call(api, "api_post_events.json", body=body)
    finally:
        client.meta.events.unregister("before-send.dynamodb.TransactWriteItems", down)
    # THEN the client is told to try again, and nothing is stored (all or nothing)
    assert status == 503 and "try again" in reply["detail"], reply
    assert store.item_counts("c1") == {} and store.recent("c1", 5).events == []
    # AND the client's retry (twice: a retry of the retry) stores and counts them once
    for _ in range(2):
        status, reply = call(api, "api_post_events.json", body=body)
        assert status == 202 and reply["recorded"] == 2, reply
    assert {i: c.count for i, c in store.item_counts("c1").items()} == {"50": 1, "181": 1}


def test_a_failed_read_serves_the_last_counts_and_says_how_old(tmp_path):
    from lmrec.userstore import UserStoreUnavailable

    users = open_user_store(f"sqlite://{tmp_path / 'users.db'}")
    now = time.time()
    users.put_events([Event("a", "x", now)], DAY, Trending(now, 48 * HOUR))
    fail = []

    def read(first: int, last: int, limit: int):
        if fail:
            raise UserStoreUnavailable("the table did not answer")
        return users.trending_counts(first, last, limit)

    clock = [now]
    counts = TrendingCounts(read, 48 * HOUR, cache_seconds=5, clock=lambda: clock[0])
    first = counts.snapshot()
    fail.append(True)
    clock[0] += 30  # past the cache: a read is due, and fails
    assert counts.snapshot() is first and first.read_at == now
    with pytest.raises(UserStoreUnavailable):  # no snapshot yet: the error, for a warning
        TrendingCounts(read, 48 * HOUR, cache_seconds=5).snapshot()


def test_under_jwt_any_verified_user_may_read_it_and_no_one_else(monkeypatch, api):
    from tests.test_api_robustness import as_user, reply

    settings = api.app.state.settings.model_copy(update={"auth": "jwt"})
    monkeypatch.setattr(api.app.state, "settings", settings)
    alice = {"sub": "1", "scope": "openid"}
    status, body = reply(api, as_user("api_get_trending.json", alice))
    assert status == 200 and len(body["items"]) == 5  # no user's data: any user may read it
    status, body = reply(api, as_user("api_get_trending.json", None))
    assert status == 401 and set(body) == {"detail"}


def test_a_bucket_weighs_from_the_middle_of_its_elapsed_part_and_never_jumps():
    # GIVEN a bucket that opened at `start`
    start = 1_790_000_100.0 - 1_790_000_100.0 % trending.BUCKET_SECONDS
    b = np.asarray([trending.bucket_of(start)])
    hl = 600.0

    def weight(now: float) -> float:
        return float(trending.decay(b, now, hl)[0])

    # THEN while open, its events are on average half its elapsed time old
    assert weight(start) == 1.0
    assert weight(start + 100) == pytest.approx(2 ** (-50 / hl))
    assert weight(start + 200) == pytest.approx(2 ** (-100 / hl))
    # AND at its close the weight goes on smoothly (no step when the next bucket opens)
    end = start + trending.BUCKET_SECONDS
    assert weight(end - 1e-3) == pytest.approx(weight(end + 1e-3), rel=1e-5)
    assert weight(end + 600) == pytest.approx(2 ** (-(600 + 150) / hl))


def test_a_refresh_reads_at_most_max_counters_newest_first_and_says_what_is_partial(user_store):
    # GIVEN 70 items counted an hour ago and 3 now: more counters than the refresh may read
    now = time.time()
    old = [Event("u", f"old{i}", now - HOUR) for i in range(70)]
    user_store.put_events(old, DAY, Trending(now - HOUR, 48 * HOUR))
    new = [Event("u", f"new{i}", now) for i in range(3)]
    user_store.put_events(new, DAY, Trending(now, 48 * HOUR))
    first, last = trending.bucket_of(now - 48 * HOUR), trending.bucket_of(now)
    # WHEN the store is asked for at most 64
    rows, partial = user_store.trending_counts(first, last, 64)
    # THEN it reads no more, the newest bucket whole, and names the bucket it stopped in
    assert len(rows) <= 64 and {i for b, i, _ in rows if b == last} == {"new0", "new1", "new2"}
    assert partial == trending.bucket_of(now - HOUR)
    # AND the instance's counts keep what they read, say so, and do not read it again
    reads: list[int] = []

    def read(first: int, last: int, limit: int):
        reads.append(first)
        return user_store.trending_counts(first, last, limit)

    clock = [now]
    counts = TrendingCounts(
        read, 48 * HOUR, cache_seconds=0, clock=lambda: clock[0], max_counters=64
    )
    snap = counts.snapshot()
    assert snap.partial_through == trending.bucket_of(now - HOUR)
    assert {"new0", "new1", "new2"} <= set(snap.items)
    clock[0] += 2 * trending.BUCKET_SECONDS
    assert counts.snapshot().partial_through == trending.bucket_of(now - HOUR)
    assert reads[1] > trending.bucket_of(now - HOUR)


def test_a_capped_read_is_answered_with_a_warning(monkeypatch, api, store):
    # GIVEN more counters than this instance's refresh may read
    now = time.time()
    old = [Event("u", f"i{n}", now - HOUR) for n in range(20)]
    store.put_events(old, DAY, Trending(now - HOUR, 48 * HOUR))
    monkeypatch.setattr(api.app.state.trending, "max_counters", 16)
    # WHEN trending is asked for THEN it answers, and says the older counts are partial
    status, body = get(api, {"k": 5})
    assert status == 200 and len(body["items"]) == 5, body
    assert any("partly counted" in w for w in body["warnings"]), body
