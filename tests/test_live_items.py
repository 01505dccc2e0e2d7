"""Items added after the model: PUT/DELETE /v1/items, the overlay in recommendations,
rankings and similar items, exploration, item files, and bad inputs (through the Lambda
handler, on moto's DynamoDB)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from lmrec import itemstore, liveitems, registry
from lmrec.itemstore import ItemRecord, now_ms
from lmrec.local.stack import LambdaContext

from tests.conftest import call, import_function, load_event, sam_invoke
from tests.live_helpers import HISTORY, NEW_FIELDS, top_item, with_content, without_content

NEW = "new-film-1"


@pytest.fixture(scope="session")
def content_bundle(tmp_path_factory, trained_bundle):
    row, _, gain = top_item(trained_bundle, HISTORY)
    return with_content(trained_bundle, tmp_path_factory.mktemp("content") / "b", row, gain)


def _serve(monkeypatch, tmp_path, bundle_dir, auth: str = "none"):
    from lmrec.settings import get_settings

    root = f"file://{tmp_path / 'store'}"
    registry.set_production(root, "lmrec", registry.publish(bundle_dir, root, "lmrec"))
    table = f"items-{uuid.uuid4().hex[:8]}"
    itemstore.create_table(table)
    monkeypatch.setenv("LMREC_STORE_URI", root)
    monkeypatch.setenv("LMREC_ITEM_STORE", f"dynamodb://{table}")
    monkeypatch.setenv("LMREC_AUTH", auth)
    monkeypatch.delenv("LMREC_USER_STORE", raising=False)
    get_settings.cache_clear()
    fn = import_function("api", f"fn_api_{uuid.uuid4().hex[:6]}")
    get_settings.cache_clear()
    return fn


@pytest.fixture
def live_api(monkeypatch, s3_env, tmp_path, content_bundle):
    return _serve(monkeypatch, tmp_path, content_bundle)


def put(fn, body, claims=None):
    event = load_event("api_put_items.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    reply = fn.handler(event, LambdaContext())
    return reply["statusCode"], json.loads(reply["body"])


def delete(fn, item_id: str):
    path = f"/v1/items/{item_id}"
    return call(fn, "api_delete_item.json", path=path)


def recommended(fn, **extra) -> list[str]:
    status, body = call(fn, "api_post_recommendations.json", {"history": HISTORY, **extra})
    assert status == 200, body
    return [i["item_id"] for i in body["items"]]


def similar(fn, item_id: str) -> tuple[int, dict]:
    return call(fn, "api_get_similar.json", path=f"/v1/items/{item_id}/similar", query="k=10")


def test_a_new_item_is_recommended_ranked_and_similar_then_gone_when_unavailable(
    live_api, trained_bundle
):
    # GIVEN a model whose content part places NEW_FIELDS next to the history's top item
    _, top, _ = top_item(trained_bundle, HISTORY)
    assert NEW not in recommended(live_api)
    # WHEN the item is PUT
    status, body = put(live_api, {"item_id": NEW, "fields": NEW_FIELDS})
    assert status == 200, body
    assert body["items"] == [{"item_id": NEW, "status": "added", "in_model": False, "scored": True}]
    # THEN it is recommended first (1.5 x the top item's vector), with its own fields
    status, reply = call(live_api, "api_post_recommendations.json", {"history": HISTORY})
    assert reply["items"][0]["item_id"] == NEW
    assert reply["items"][0]["attributes"]["genres"] == ["Sci-Fi", "Adventure"]
    # and it has similar items (the top item first: the same direction), and is one of them
    status, sim = similar(live_api, NEW)
    assert status == 200 and sim["items"][0]["item_id"] == top
    assert sim["items"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    status, sim = similar(live_api, top)
    assert NEW in [i["item_id"] for i in sim["items"]][:1]
    # and rankings score it beside catalog candidates
    body = {"history": HISTORY, "candidates": ["50", NEW, "nope"]}
    status, ranked = call(live_api, "api_post_rankings.json", body)
    assert status == 200 and ranked["items"][0]["item_id"] == NEW
    assert ranked["unknown_candidates"] == ["nope"]
    # WHEN made unavailable THEN it is in no reply, yet its record stays
    status, gone = delete(live_api, NEW)
    assert status == 200 and gone["items"][0]["status"] == "unavailable"
    assert NEW not in recommended(live_api)
    assert NEW not in [i["item_id"] for i in similar(live_api, top)[1]["items"]]
    status, ranked = call(live_api, "api_post_rankings.json", body)
    assert ranked["filtered_candidates"] == [NEW]


def test_a_catalog_item_made_unavailable_is_never_returned_yet_read_in_histories(live_api):
    first = recommended(live_api)[0]
    _, now = call(live_api, "api_get_trending.json", query="k=100")
    top_now = now["items"][0]["item_id"]
    status, _ = delete(live_api, first)
    assert status == 200
    status, _ = delete(live_api, top_now)
    assert status == 200
    # GET /v1/trending hides it too (it shows catalog items, not only the model's)
    status, now = call(live_api, "api_get_trending.json", query="k=100")
    assert status == 200 and {first, top_now}.isdisjoint(i["item_id"] for i in now["items"])
    status, body = call(
        live_api, "api_post_recommendations.json", {"history": [*HISTORY, first], "k": 50}
    )
    assert first not in [i["item_id"] for i in body["items"]]
    assert body["history_length"] == len(HISTORY) + 1  # still understood in the history
    status, sim = similar(live_api, "1")
    assert first not in [i["item_id"] for i in sim["items"]]
    # PUT available=true brings it back
    status, _ = put(live_api, {"item_id": first, "fields": {"title": "back"}, "available": True})
    assert status == 200 and first in recommended(live_api)


def test_availability_alone_keeps_the_fields_and_replies_show_stored_ones(live_api):
    status, _ = delete(live_api, "1")
    assert status == 200
    stored = live_api.app.state.live.store.all()["1"].fields  # the catalog's, as DELETE kept
    assert stored["title"]
    status, _ = put(live_api, {"item_id": "1", "available": True})  # no "fields": keep them
    assert status == 200
    assert live_api.app.state.live.store.all()["1"].fields == stored
    status, _ = put(live_api, {"item_id": "1", "fields": {"title": "Toy Story, restored"}})
    assert status == 200
    status, now = call(live_api, "api_get_trending.json", query="k=100")
    shown = {i["item_id"]: i["attributes"] for i in now["items"]}
    assert shown["1"]["title"] == "Toy Story, restored"
    # with no new item stored (the overlay's length is 0), rankings show them as well
    body = {"history": HISTORY, "candidates": ["1", "50"]}
    status, ranked = call(live_api, "api_post_rankings.json", body)
    shown = {i["item_id"]: i["attributes"] for i in ranked["items"]}
    assert status == 200 and shown["1"]["title"] == "Toy Story, restored"


def test_availability_alone_keeps_fields_stored_by_another_instance(live_api):
    # another instance stored the item; this one has not polled since (a background poll an
    # earlier request started is let finish first, or it may read the record: a flaky test)
    live = live_api.app.state.live
    if live._thread is not None:
        live._thread.join(10)
    other = ItemRecord("from-elsewhere", {"title": "Kept"}, True, now_ms(), now_ms())
    live.store.put([other])
    assert "from-elsewhere" not in live.records
    status, _ = put(live_api, {"item_id": "from-elsewhere", "available": False})
    assert status == 200
    stored = live.store.all()["from-elsewhere"]
    assert stored.fields == {"title": "Kept"} and not stored.available


def test_exploration_reserves_slots_for_young_items_only_when_asked(live_api):
    # GIVEN a new item whose content vector is noise (no trained rows): it ranks low
    status, _ = put(live_api, {"item_id": "quiet", "fields": {"title": "plain words here"}})
    assert status == 200
    assert "quiet" not in recommended(live_api, k=10)
    # WHEN a request reserves 20% of k for items younger than a day THEN it is shown
    shown = recommended(live_api, k=10, explore_share=0.2, explore_max_age_hours=24)
    assert "quiet" in shown and len(shown) == 10


def test_a_bundle_without_content_stores_new_items_but_does_not_score_them(
    monkeypatch, s3_env, tmp_path, trained_bundle
):
    fn = _serve(monkeypatch, tmp_path, without_content(trained_bundle, tmp_path / "plain"))
    status, body = put(fn, {"item_id": NEW, "fields": NEW_FIELDS})
    assert status == 200 and body["items"][0]["scored"] is False
    assert "no content part" in body["warnings"][0]
    status, reply = call(fn, "api_post_recommendations.json", {"history": HISTORY})
    assert status == 200 and NEW not in [i["item_id"] for i in reply["items"]]
    assert any("not scored" in w for w in reply["warnings"])
    status, sim = similar(fn, NEW)
    assert status == 200 and sim["items"] == [] and "no content part" in sim["warnings"][-1]


BAD = [
    ("oversized text", {"item_id": "x", "fields": {"title": "a" * 10_001}}, 422, "10000"),
    ("blank id", {"item_id": "  ", "fields": {}}, 422, "non-blank"),
    ("numeric id", {"item_id": 7, "fields": {}}, 422, "string"),
    ("long id", {"item_id": "i" * 257, "fields": {}}, 422, "256"),
    ("unknown column", {"item_id": "x", "fields": {"colour": "red"}}, 422, "colour"),
    ("nested value", {"item_id": "x", "fields": {"title": {"a": 1}}}, 422, "string or a number"),
    ("no items", {"items": []}, 422, "1 to 100"),
    ("too many", {"items": [{"item_id": str(i)} for i in range(101)]}, 422, "1 to 100"),
    ("repeated id", {"items": [{"item_id": "a"}, {"item_id": "a"}]}, 422, "twice"),
    ("unknown key", {"item_id": "x", "price": 3}, 422, "unknown keys"),
    ("not an object", [1, 2], 422, "JSON object"),
    ("bad JSON", '{"item_id": ', 422, "JSON"),
    # a lone surrogate is stored by DynamoDB, then fails every reply that shows the item
    ("lone surrogate", '{"item_id": "x", "fields": {"title": "Star Wars\\udc00"}}', 422, "Unicode"),
]


@pytest.mark.parametrize(("what", "body", "status", "says"), BAD, ids=[b[0] for b in BAD])
def test_bad_items_are_refused_with_a_4xx_and_nothing_is_stored(live_api, what, body, status, says):
    got, reply = put(live_api, body)
    print(f"{what}: {got} {reply['detail'][:120]}")
    assert got == status and says in reply["detail"]
    assert live_api.app.state.live.store.all() == {}


def test_a_batch_with_one_bad_item_stores_none(live_api):
    batch = {"items": [{"item_id": "good"}, {"item_id": "bad", "fields": {"colour": "x"}}]}
    assert put(live_api, batch)[0] == 422
    assert live_api.app.state.live.store.all() == {}


def test_only_a_service_caller_changes_items(monkeypatch, s3_env, tmp_path, content_bundle):
    fn = _serve(monkeypatch, tmp_path, content_bundle, auth="jwt")
    user = {"sub": "1", "scope": "openid"}
    status, body = put(fn, {"item_id": NEW, "fields": NEW_FIELDS}, claims=user)
    assert status == 403 and "service scope" in body["detail"]
    status, _ = put(fn, {"item_id": NEW}, claims={"sub": "svc", "scope": "lmrec/any-user"})
    assert status == 200
    status, _ = put(fn, {"item_id": NEW}, claims=None)  # no verified token
    assert status == 401


def test_a_catalog_items_stored_categories_decide_every_category_filter(live_api):
    # GIVEN the model's first pick for HISTORY, a catalog item, and its catalog genres
    status, body = call(live_api, "api_post_recommendations.json", {"history": HISTORY})
    first, genres = body["items"][0]["item_id"], body["items"][0]["attributes"]["genres"]
    assert genres and "Holiday Special" not in genres
    # WHEN a PUT gives it a genre no catalog item has, in place of its own
    fields = {"title": "Renamed", "genres": "Holiday Special"}
    status, _ = put(live_api, {"item_id": first, "fields": fields})
    assert status == 200

    def ids(**filters) -> list[str]:
        return recommended(live_api, k=50, **filters)

    # THEN the new name is known (not a 422) and matches it alone, in every route
    assert ids(include_categories=["Holiday Special"]) == [first]
    assert first not in ids(exclude_categories=["Holiday Special"])
    # and its old genres neither admit nor exclude it any longer
    assert first not in ids(include_categories=genres)
    assert first in ids(exclude_categories=genres)
    body = {"history": HISTORY, "candidates": [first, "50"], "include_categories": genres}
    status, ranked = call(live_api, "api_post_rankings.json", body)
    assert status == 200 and first in ranked["filtered_candidates"], ranked
    body["include_categories"] = ["Holiday Special"]
    status, ranked = call(live_api, "api_post_rankings.json", body)
    assert [i["item_id"] for i in ranked["items"]] == [first]
    query = "k=100&include_categories=Holiday%20Special"
    status, now = call(live_api, "api_get_trending.json", query=query)
    assert status == 200 and {i["item_id"] for i in now["items"]} <= {first}, now
    # and the other filters still apply to it
    assert ids(include_categories=["Holiday Special"], exclude_items=[first]) == []


def test_unknown_item_delete_is_404(live_api):
    status, body = delete(live_api, "never-seen")
    assert status == 404 and "neither" in body["detail"]


def test_records_of_catalog_items_override_only_when_newer_than_the_data(content_bundle):
    from lmrec.recommend import Recommender

    rec = Recommender.load(content_bundle)
    cut = liveitems.data_cut_ms(rec.bundle.manifest)
    old = ItemRecord("1", {"title": "old"}, False, cut - 10, cut - 10)
    new = ItemRecord("2", {"title": "new"}, False, now_ms(), now_ms())
    ov = liveitems.build(rec, [old, new], {})
    assert len(ov) == 0  # both are catalog items
    assert ov.hidden_rows.tolist() == [rec.catalog.row("2")]
    assert ov.catalog_fields == {rec.catalog.row("2"): {"title": "new"}}


def test_an_item_file_adds_changed_rows_only(monkeypatch, s3_env):
    from lmrec import aws

    table = f"items-{uuid.uuid4().hex[:8]}"
    itemstore.create_table(table)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="lmrec-data")
    csv_text = "item_id,title,genres,available\nf1,First,Drama,true\nf2,Second,Comedy,0\n,bad,,\n"
    s3.put_object(Bucket="lmrec-data", Key="data/items/new-items.csv", Body=csv_text.encode())
    env = {"LMREC_ITEM_STORE": f"dynamodb://{table}", "LMREC_STORE_URI": "s3://lmrec-data"}
    event = load_event("items_s3_object_created.json")
    out = sam_invoke("ItemsFunction", event, env, monkeypatch)
    assert out["written"] == 2 and out["refused"] == 1, out
    stored = itemstore.ItemStore(table).all()
    assert stored["f1"].fields == {"title": "First", "genres": "Drama"}
    assert stored["f2"].available is False
    again = sam_invoke("ItemsFunction", event, env, monkeypatch)
    assert again["written"] == 0 and again["unchanged"] == 2
    other = json.loads(json.dumps(event))
    other["detail"]["object"]["key"] = "data/interactions/x.csv"
    assert sam_invoke("ItemsFunction", other, env, monkeypatch)["status"] == "skipped"


def _until(check, bound: float = 10.0) -> float:
    """Seconds until check() held (asked every 0.1 s); fails past `bound`."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < bound, f"not within {bound} s"
        time.sleep(0.1)
    return time.monotonic() - began


@pytest.mark.slow
def test_lifecycle_across_instances_cold_starts_and_a_promotion(
    tmp_path, monkeypatch, trained_bundle, content_bundle
):
    """PUT on one instance -> recommended and similar-itemable on two; DELETE -> gone from
    both; a fresh instance (cold start) and a promoted model still serve what was added."""
    from lmrec.local.stack import LocalStack
    from lmrec.settings import get_settings

    from tests.conftest import running

    with running(LocalStack(tmp_path / "stack")) as stack:
        root = stack.store_uri
        registry.set_production(root, "lmrec", registry.publish(content_bundle, root, "lmrec"))
        monkeypatch.setenv("LMREC_REFRESH_SECONDS", "1")

        def instance(name: str):  # each with its own /tmp, as Lambda instances have
            monkeypatch.setenv("LMREC_CACHE_DIR", str(tmp_path / f"cache-{name}"))
            get_settings.cache_clear()
            return import_function("api", f"fn_api_{name}")

        a, b = instance("a"), instance("b")
        _, top, _ = top_item(trained_bundle, HISTORY)

        def served(fn, item_id: str = NEW) -> bool:
            return item_id in recommended(fn)[:3] and similar(fn, item_id)[0] == 200

        assert put(a, {"item_id": NEW, "fields": NEW_FIELDS})[0] == 200
        seen = _until(lambda: served(a) and served(b))
        print(f"\nPUT -> recommended and similar on both instances: {seen:.2f} s")
        assert delete(b, NEW)[0] == 200
        gone = _until(
            lambda: all(
                NEW not in recommended(fn)
                and NEW not in [i["item_id"] for i in similar(fn, top)[1]["items"]]
                for fn in (a, b)
            )
        )
        print(f"DELETE -> gone from both instances: {gone:.2f} s")
        assert put(a, {"item_id": "new-2", "fields": NEW_FIELDS})[0] == 200
        began = time.monotonic()
        c = instance("c")  # a cold start
        assert served(c, "new-2") and NEW not in recommended(c)
        print(f"cold start serves new-2 at its first request: {time.monotonic() - began:.2f} s")
        row, _, gain = top_item(trained_bundle, HISTORY)
        again = with_content(trained_bundle, tmp_path / "second", row, gain, suffix="c2")
        pointer = registry.publish(again, root, "lmrec")
        registry.set_production(root, "lmrec", pointer)
        moved = _until(  # every instance asked each round: a request is what starts a refresh
            lambda: all(
                [
                    served(fn, "new-2") and fn.state.version == pointer.model_version
                    for fn in (a, b, c)
                ]
            ),
            bound=60.0,  # a model load (download, verify, smoke) per instance, on a shared CPU
        )
        print(f"promotion -> new model serves new-2 on all three: {moved:.2f} s")


def test_an_exploration_slot_never_repeats_a_shown_item(monkeypatch):
    # GIVEN two young new items, one of them already in the model's top-k, and a second
    # scoring pass (young items only) whose products differ in the last bit from the first
    import dataclasses

    import numpy as np
    from lmrec.recommend import Recommendation

    records = [ItemRecord(f"n{i}", {}, True, now_ms(), now_ms()) for i in range(2)]
    ov = dataclasses.replace(
        liveitems.empty("v"),
        records=records,
        index={"n0": 0, "n1": 1},
        vectors=np.eye(2, 4, dtype=np.float32),
        unit=np.eye(2, 4, dtype=np.float32),
        available=np.ones(2, bool),
        added_s=np.full(2, time.time()),
    )
    calls = []

    def scores(ov_, query, mask, k):
        calls.append(1)
        at = np.flatnonzero(mask)[:k]
        return at, np.array([5.0, 0.5], np.float32)[at] + (1e-6 if len(calls) > 1 else 0.0)

    monkeypatch.setattr(liveitems, "scores", scores)
    base = [Recommendation(f"k{j}", 10.0 - j, j + 1) for j in range(10)]
    # WHEN two of ten slots are reserved for young items
    now = time.time()
    top = liveitems.merge(base, ov, None, np.ones(2, bool), 10, liveitems.Explore(0.2), now)
    ids = [r.item_id for r in top]
    # THEN each new item appears once, n0 where its score puts it, n1 in the last slot
    assert len(ids) == 10 and len(set(ids)) == 10, ids
    assert ids.count("n0") == 1 and ids[-1] == "n1"
