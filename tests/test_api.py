"""The API through its Lambda handler (Mangum) with API Gateway HTTP API v2 events."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from lmrec import aws, registry, store
from lmrec.settings import get_settings

from tests.conftest import call, import_function


def test_recommendations_for_a_known_user(api):
    status, body = call(api, "api_post_recommendations.json")
    assert status == 200, body
    assert body["strategy"] == "personalized" and len(body["items"]) == 5
    assert [i["rank"] for i in body["items"]] == [1, 2, 3, 4, 5]
    assert all(i["attributes"]["title"] for i in body["items"])
    assert all("Horror" not in i["attributes"]["genres"] for i in body["items"])
    assert all(i["reason"]["item_id"] and i["reason"]["title"] for i in body["items"])
    assert body["model_version"] == api.state.version
    # each reason's title is its own item's (titles are read by row, once per reason)
    catalog = api.state.recommender.catalog
    for i in body["items"]:
        row = catalog.row(i["reason"]["item_id"])
        assert i["reason"]["title"] == catalog.fields(row)["title"]


def test_history_only_unknown_ids_and_cold_users(api):
    status, body = call(
        api,
        "api_post_recommendations_history.json",
        body={"history": ["50", "no-such-item", "181"], "k": 3},
    )
    assert status == 200 and body["unknown_items"] == ["no-such-item"]
    assert body["history_length"] == 2 and body["strategy"] == "personalized"
    status, body = call(api, "api_post_recommendations.json", body={"user_id": "new-user"})
    assert status == 200 and body["strategy"] == "popular" and len(body["items"]) == 10


def test_get_routes(api):
    status, body = call(api, "api_get_user_recommendations.json")
    assert status == 200 and len(body["items"]) == 5 and body["user_id"] == "1"
    status, body = call(api, "api_get_similar.json")
    assert status == 200 and len(body["items"]) == 5
    assert "50" not in [i["item_id"] for i in body["items"]]
    status, body = call(api, "api_get_model.json")
    assert (
        status == 200 and body["catalog_size"] > 100 and "student" in body["metrics"]["test_full"]
    )
    status, body = call(api, "api_get_health.json")
    assert status == 200 and body["status"] == "ok" and body["reason"] is None
    assert body["model_version"] == api.state.version and body["loaded_at"].startswith("20")


def test_events_change_the_next_recommendation_and_can_be_erased(api):
    _, before = call(api, "api_post_recommendations.json", body={"user_id": "1", "k": 10})
    top = before["items"][0]["item_id"]
    status, body = call(
        api,
        "api_post_events.json",
        body={"events": [{"user_id": "1", "item_id": top, "event_type": "watch"}]},
    )
    assert status == 202 and body["recorded"] == 1
    _, after = call(api, "api_post_recommendations.json", body={"user_id": "1", "k": 10})
    assert after["history_length"] == before["history_length"] + 1
    assert top not in [i["item_id"] for i in after["items"]]  # now seen
    # the older route is now the full erasure: the history goes with the events
    status, body = call(api, "api_delete_events.json")
    assert status == 200
    # history, the event, and the user's count of the item
    assert body == {"user_id": "1", "deleted": 3, "erasure_recorded": True, "complete": True}
    _, again = call(api, "api_post_recommendations.json", body={"user_id": "1", "k": 10})
    assert again["history_length"] == 0 and again["strategy"] == "popular"
    # the erasure route's own sample (DELETE /v1/users/1): nothing left, the request recorded
    call(api, "api_post_events.json", body={"events": [{"user_id": "1", "item_id": top}]})
    status, body = call(api, "api_delete_user.json")
    assert status == 200 and body["user_id"] == "1" and body["erasure_recorded"] is True
    assert body["deleted"] >= 1 and body["complete"] is True


@pytest.mark.parametrize(
    ("body", "raw", "status", "fragment"),
    [
        (None, "{not json", 422, "JSON"),
        ({"user_id": "1", "k": "5"}, None, 422, "k: Input should be a valid integer"),
        ({"user_id": "1", "k": 0}, None, 422, "k: Input should be greater than or equal to 1"),
        ({"user_id": "1", "k": 101}, None, 422, "less than or equal to 100"),
        ({"user_id": 1}, None, 422, "user_id: Input should be a valid string"),
        ({"user_id": "1", "extra": True}, None, 422, "extra: Extra inputs are not permitted"),
        ({"k": 3}, None, 422, "give a user_id, a history, or both"),
        ({"history": ["1"] * 1001}, None, 422, "history: List should have at most 1000 items"),
        ({"user_id": "x" * 300}, None, 422, "user_id: String should have at most 256"),
        (None, json.dumps({"user_id": "1", "pad": "x" * 300_000}), 413, "request body over"),
        ([1, 2], None, 422, "Input should be a valid dictionary"),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(api, body, raw, status, fragment):
    got, reply = call(api, "api_post_recommendations.json", body=body, raw_body=raw)
    assert got == status and fragment in reply["detail"], reply


def test_future_events_and_unknown_categories(api):
    future = {"events": [{"user_id": "1", "item_id": "50", "timestamp": 4_000_000_000}]}
    status, reply = call(api, "api_post_events.json", body=future)
    assert status == 422 and "timestamp is in the future" in reply["detail"]


def test_unknown_categories_are_named_and_do_what_the_reply_says(api):
    def ask(**filters):
        return call(api, "api_post_recommendations.json", body={"user_id": "1", **filters})

    # an include filter of only unknown names could only answer nothing: 422 naming them
    status, reply = ask(include_categories=["Polka", "Ska"])
    assert status == 422 and "none is in the catalog" in reply["detail"], reply
    assert "Polka, Ska" in reply["detail"]
    # one known name: its items, and a warning that the unknown one matched none
    status, reply = ask(include_categories=["Polka", "Drama"], k=5)
    assert status == 200 and len(reply["items"]) == 5, reply
    assert all("Drama" in i["attributes"]["genres"] for i in reply["items"])
    assert reply["warnings"] == ["unknown include categories match no items: Polka"]
    # an unknown exclude name excludes nothing: the same items as no filter at all
    status, plain = ask(k=5)
    status, reply = ask(exclude_categories=["Polka"], k=5)
    assert status == 200 and reply["items"] == plain["items"]
    assert reply["warnings"] == ["unknown exclude categories ignored: Polka"]


def test_ids_with_slashes_reach_their_routes(api):
    status, body = call(
        api, "api_post_events.json", body={"events": [{"user_id": "team/alice", "item_id": "50"}]}
    )
    assert status == 202
    status, body = call(
        api, "api_get_user_recommendations.json", path="/v1/users/team/alice/recommendations"
    )
    assert status == 200 and body["user_id"] == "team/alice" and body["history_length"] == 1
    status, body = call(api, "api_delete_events.json", path="/v1/users/team/alice/events")
    assert status == 200 and body == {
        "user_id": "team/alice",
        "deleted": 2,  # the event and the user's count of its item
        "erasure_recorded": True,
        "complete": True,
    }


def test_a_user_whose_id_ends_in_events_is_erased_not_the_prefix_user(api):
    # "bob/events" percent-encoded routes to the older /{id}/events form once decoded; the
    # path as sent decides whose data goes (it erased "bob" before)
    for user in ("bob", "bob/events"):
        body = {"events": [{"user_id": user, "item_id": "50"}]}
        assert call(api, "api_post_events.json", body=body)[0] == 202
    status, body = call(api, "api_delete_events.json", path="/v1/users/bob%2Fevents")
    assert status == 200 and body["user_id"] == "bob/events"
    status, body = call(
        api, "api_get_user_recommendations.json", path="/v1/users/bob/recommendations"
    )
    assert status == 200 and body["history_length"] == 1  # bob keeps his event
    status, body = call(api, "api_delete_events.json", path="/v1/users/bob/%65vents")
    assert status == 200 and body["user_id"] == "bob"  # an encoded letter is still "events"


def test_get_routes_refuse_unknown_or_repeated_query_parameters(api):
    # as /v1/trending does: a typo or a second k is a 422, not silently ignored
    cases = [
        ("api_get_similar.json", None, "k=1&k=2", "k: given 2 times"),
        ("api_get_similar.json", None, "kk=3", "unknown query parameter(s): 'kk'"),
        ("api_get_user_recommendations.json", "/v1/users/1/recommendations", "top=5", "'top'"),
        (
            "api_get_user_recommendations.json",
            "/v1/users/1/recommendations",
            "explain=1&explain=0",
            "explain: given 2 times",
        ),
    ]
    for event, path, query, says in cases:
        status, reply = call(api, event, path=path, query=query)
        assert status == 422 and says in reply["detail"], (query, reply)
    status, _ = call(
        api,
        "api_get_user_recommendations.json",
        path="/v1/users/1/recommendations",
        query="k=3&explain=false",
    )
    assert status == 200


def test_an_event_type_with_a_nul_is_refused(api):
    # the stored key digests item NUL type: a NUL in the type could merge two events
    event = {"user_id": "u", "item_id": "a", "event_type": "b\u0000c"}
    status, body = call(api, "api_post_events.json", body={"events": [event]})
    assert status == 422 and "NUL" in body["detail"]


def test_bad_paths_and_queries(api):
    assert call(api, "api_get_similar.json", path="/v1/items/nope/similar")[0] == 404
    status, reply = call(api, "api_get_similar.json", query="k=abc")
    assert status == 422 and "k:" in reply["detail"]
    assert call(api, "api_get_health.json", path="/v2/nothing")[0] == 404
    status, reply = call(api, "api_post_events.json", body={"events": []})
    assert status == 422 and "events" in reply["detail"]
    many = {"events": [{"user_id": "u", "item_id": "1"}] * 101}
    assert call(api, "api_post_events.json", body=many)[0] == 422


def test_corrupt_new_bundle_never_replaces_the_good_one(api, model_store, trained_bundle, tmp_path):
    good = api.state.version
    # GIVEN a "new" version whose weights were damaged after publishing
    bad_dir = tmp_path / "bad"
    shutil.copytree(trained_bundle, bad_dir)
    manifest = json.loads((bad_dir / "manifest.json").read_text())
    manifest["model_version"] = "v-corrupt"
    (bad_dir / "manifest.json").write_text(json.dumps(manifest))
    pointer = registry.publish(bad_dir, model_store, "lmrec")
    name = manifest["served"]["weights"]
    weights = f"{pointer.bundle_uri}/{name}"
    store.write_bytes(weights, store.read_bytes(weights)[:-100])
    registry.set_production(model_store, "lmrec", pointer)
    # WHEN the server refreshes
    api.state.refresh()
    # THEN it keeps serving the good model and says so
    status, body = call(api, "api_get_health.json")
    assert status == 200 and body["status"] == "degraded" and name in body["reason"]
    status, body = call(api, "api_post_recommendations.json")
    assert status == 200 and body["model_version"] == good


def test_store_down_at_refresh_keeps_serving(api, monkeypatch, model_store, tmp_path):
    good = api.state.version
    # the store disappears (a file:// store moved away)
    gone = api.state.settings.model_copy(update={"store_uri": f"file://{tmp_path}/gone"})
    monkeypatch.setattr(api.state, "settings", gone)
    api.state.refresh()
    status, body = call(api, "api_get_health.json")
    assert status == 200 and body["status"] == "degraded" and "production pointer" in body["reason"]
    assert call(api, "api_post_recommendations.json")[1]["model_version"] == good


def test_s3_unreachable_at_refresh_keeps_serving(monkeypatch, s3_env, trained_bundle):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="lmrec-models-down")
    root = "s3://lmrec-models-down"
    registry.set_production(root, "lmrec", registry.publish(trained_bundle, root, "lmrec"))
    monkeypatch.setenv("LMREC_STORE_URI", root)
    get_settings.cache_clear()
    fn = import_function("api", "fn_api_s3_down")
    assert fn.state.version is not None
    # S3 stops answering: the endpoint (stdlib reads) and the client point at a closed port
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    down = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        config=__import__("botocore.config").config.Config(
            connect_timeout=1, retries={"max_attempts": 1}
        ),
    )
    monkeypatch.setitem(aws._clients, "s3", (store.s3_endpoint(), down))
    fn.state.refresh()
    status, body = call(fn, "api_get_health.json")
    assert status == 200 and body["status"] == "degraded"
    assert call(fn, "api_post_recommendations.json")[0] == 200
    get_settings.cache_clear()


def test_no_model_at_cold_start_answers_503_then_recovers(monkeypatch, tmp_path, trained_bundle):
    root = f"file://{tmp_path / 'empty-store'}"
    monkeypatch.setenv("LMREC_STORE_URI", root)
    monkeypatch.setenv("LMREC_USER_STORE", "")
    get_settings.cache_clear()
    fn = import_function("api", "fn_api_cold")  # must not raise
    status, body = call(fn, "api_post_recommendations.json")
    assert status == 503 and "no model is loaded yet" in body["detail"]
    status, body = call(fn, "api_get_health.json")
    assert status == 503 and body["status"] == "unavailable"
    registry.set_production(root, "lmrec", registry.publish(trained_bundle, root, "lmrec"))
    fn.state.refresh()
    assert call(fn, "api_post_recommendations.json")[0] == 200
    status, body = call(fn, "api_post_events.json")
    assert status == 503 and "events are disabled" in body["detail"]
    get_settings.cache_clear()


def test_user_store_unavailable(api, monkeypatch):
    monkeypatch.setattr(api.app.state.users, "table", "no-such-table")
    # as if the function had been deployed with it (its role is judged for this table)
    monkeypatch.setenv("LMREC_USER_STORE", "dynamodb://no-such-table")
    status, body = call(api, "api_post_recommendations.json")
    assert status == 200 and body["degraded"] and "stored history" in body["warnings"][0]
    status, body = call(api, "api_post_events.json")
    assert status == 503 and "not recorded" in body["detail"]
    assert "no-such-table" not in body["detail"]


def test_get_user_recommendations_takes_exclude_seen_from_the_deployment(api, monkeypatch):
    # GIVEN a user with a history WHEN the deployment says seen items may come back
    # (LMREC_EXCLUDE_SEEN=false, as a model trained with repeats kept would) THEN the GET
    # route ranks them too, as the POST route does; by default it never returns them
    status, body = call(
        api, "api_post_events.json", body={"events": [{"user_id": "rep", "item_id": "50"}]}
    )
    assert status == 202
    path = "/v1/users/rep/recommendations"
    query = "k=100"
    status, default = call(api, "api_get_user_recommendations.json", path=path, query=query)
    assert status == 200 and "50" not in [i["item_id"] for i in default["items"]]
    monkeypatch.setenv("LMREC_EXCLUDE_SEEN", "false")
    get_settings.cache_clear()
    fn = import_function("api", "api_exclude_seen_off")
    status, body = call(fn, "api_get_user_recommendations.json", path=path, query=query)
    assert status == 200 and "50" in [i["item_id"] for i in body["items"]]
