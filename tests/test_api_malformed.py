"""Malformed requests through the Lambda handler (API Gateway v2 events, as deployed): bodies
that are not UTF-8 or nest too deep get the 422 every validation error gets, a Content-Length
that cannot be true gets 400, a path whose bytes are not text gets 422 (rather than naming
some user it was never about), and POST /v1/events counts what it stored."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import LambdaContext, call, load_event


def send(api, event_name: str, body: bytes | None = None, headers=None, path=None):
    """The handler's (status, headers, parsed body) for raw bytes, as API Gateway delivers a
    body it holds as binary: base64-encoded."""
    event = load_event(event_name)
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    event["headers"].update(headers or {})
    if path is not None:
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    reply = api.handler(event, LambdaContext())
    return reply["statusCode"], reply["headers"], json.loads(reply["body"])


def assert_validation_error(status: int, headers: dict, body: dict, fragment: str) -> None:
    """The shape of every 422 the API gives: {"detail": "<where>: <what>"} as JSON."""
    assert status == 422, body
    assert headers["content-type"] == "application/json" and set(body) == {"detail"}
    assert isinstance(body["detail"], str) and fragment in body["detail"], body


def test_a_known_validation_error_has_the_shape_the_others_follow(api):
    status, headers, body = send(api, "api_post_recommendations.json", b'{"user_id": 1}')
    assert_validation_error(status, headers, body, "user_id: Input should be a valid string")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"history": ["\xff\xfe"]}', "body: not valid UTF-8"),
        (b'{"user_id": "caf\xe9"}', "body: not valid UTF-8"),  # Latin-1, not UTF-8
        (b'{"user_id": "\xc0\xaf"}', "body: not valid UTF-8"),  # an overlong "/"
        (b"[" * 100_000 + b"]" * 100_000, "body: JSON nested too deeply"),
        (b'{"history": ' + b"[" * 3000 + b"]" * 3000 + b"}", "body: JSON nested too deeply"),
        (b'{"history": ' + b"[" * 40 + b"]" * 40 + b"}", "history.0: Input should be a valid"),
        (b'{"k": ' + b"1" * 5000 + b"}", "body: "),  # beyond Python's int-from-text limit
        (b'{"user_id": "\\ud800"}', "user_id: "),  # a lone surrogate: no UTF-8 text
        (b'{"history": ["50"], "include_categories": ["\\udfff"]}', "include_categories.0: "),
    ],
    ids=["utf8-bytes", "latin1", "overlong", "deep-100k", "deep-3000", "deep-40", "huge-int",
         "surrogate-id", "surrogate-category"],
)  # fmt: skip
def test_bodies_that_are_not_json_text_get_the_validation_422(api, raw, fragment):
    status, headers, body = send(api, "api_post_recommendations.json", raw)
    assert_validation_error(status, headers, body, fragment)


def test_events_with_undecodable_text_get_422_and_store_nothing(api):
    before = api.app.state.users.recent("1", 1000).items()
    raw = b'{"events": [{"user_id": "1", "item_id": "50", "event_type": "\\udc80"}]}'
    status, headers, body = send(api, "api_post_events.json", raw)
    assert_validation_error(status, headers, body, "events.0.event_type: ")
    assert api.app.state.users.recent("1", 1000).items() == before


@pytest.mark.parametrize(
    ("length", "status", "fragment"),
    [
        ("abc", 400, "Content-Length"),
        ("-1", 400, "Content-Length"),
        ("+20", 400, "Content-Length"),
        ("1e3", 400, "Content-Length"),
        ("", 400, "Content-Length"),
        ("5", 400, "Content-Length says 5 bytes, the body has"),
        ("999", 400, "Content-Length says 999 bytes, the body has"),
        ("9" * 30, 413, "request body over"),
    ],
)
def test_a_content_length_that_cannot_be_true_is_400(api, length, status, fragment):
    got, headers, body = send(
        api, "api_post_recommendations.json", b'{"history": ["50"]}', {"content-length": length}
    )
    assert got == status and fragment in body["detail"], body
    assert headers["content-type"] == "application/json"


def test_a_true_content_length_is_served(api):
    raw = '{"history": ["50"], "user_id": "\u00e9"}'.encode()
    status, _, body = send(
        api, "api_post_recommendations.json", raw, {"content-length": str(len(raw))}
    )
    assert status == 200 and body["user_id"] == "\u00e9"


@pytest.mark.parametrize(
    ("event_name", "path"),
    [
        ("api_get_user_recommendations.json", "/v1/users/%ff%fe/recommendations"),
        ("api_get_user_recommendations.json", "/v1/users/%fe%ff/recommendations"),
        ("api_get_user_recommendations.json", "/v1/users/%c3/recommendations"),  # cut short
        ("api_delete_events.json", "/v1/users/%ff"),
        ("api_delete_events.json", "/v1/users/%ed%a0%80/events"),  # an encoded surrogate
        ("api_get_similar.json", "/v1/items/%80/similar"),
    ],
)
def test_paths_that_are_not_text_get_422_not_some_user(api, event_name, path):
    status, headers, body = send(api, event_name, path=path)
    assert_validation_error(status, headers, body, "path: ")


def test_undecodable_paths_do_not_collapse_into_one_user(api):
    """Before: %ff%fe and %fe%ff both decoded to U+FFFD U+FFFD, so an erasure of one erased
    the other, and either read the other's history."""
    status, _ = call(
        api,
        "api_post_events.json",
        body={"events": [{"user_id": "\ufffd\ufffd", "item_id": "50"}]},
    )
    assert status == 202
    for raw in ("%ff%fe", "%fe%ff"):
        status, _, _ = send(api, "api_delete_events.json", path=f"/v1/users/{raw}")
        assert status == 422
    assert api.app.state.users.recent("\ufffd\ufffd", 10).items() == ["50"]
    # the same user by a path that does encode it: found, and erased
    status, _, body = send(api, "api_delete_events.json", path="/v1/users/%EF%BF%BD%EF%BF%BD")
    assert status == 200 and body["deleted"] == 2  # the event and its item count


def test_percent_encoded_text_still_reaches_its_user(api):
    call(api, "api_post_events.json", body={"events": [{"user_id": "caf\u00e9", "item_id": "50"}]})
    status, _, body = send(
        api, "api_get_user_recommendations.json", path="/v1/users/caf%C3%A9/recommendations"
    )
    assert status == 200 and body["user_id"] == "caf\u00e9" and body["history_length"] == 1


def test_the_events_reply_counts_what_was_stored(api):
    same = {"user_id": "counted", "item_id": "50", "timestamp": 1_700_000_000.0}
    other = {**same, "item_id": "172"}
    status, body = call(api, "api_post_events.json", body={"events": [same, same, other, same]})
    assert status == 202 and body["recorded"] == 2, body
    assert sorted(api.app.state.users.recent("counted", 10).items()) == ["172", "50"]
    # the same event again: stored once more (the same record, overwritten), counted once
    status, body = call(api, "api_post_events.json", body={"events": [same, same]})
    assert status == 202 and body["recorded"] == 1
    assert len(api.app.state.users.recent("counted", 10).items()) == 2
