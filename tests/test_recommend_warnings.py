"""A reply built from popularity says why, in `warnings`: ids the model does not know, or no
user store to read a user's history from (what a person trying their own data first meets)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from lmrec.api import create_app
from lmrec.serving import ModelState
from lmrec.settings import Settings
from lmrec.userstore import open_user_store

NO_STORE = (
    "no user store is set, so this user's stored history was not read (set "
    "LMREC_USER_STORE, or lmrec serve --user-store)"
)


def _client(store: str, **settings) -> tuple[TestClient, str]:
    chosen = Settings(store_uri=store, **settings)
    state = ModelState(chosen)
    state.refresh()
    assert state.version
    return TestClient(create_app(chosen, state)), state.version


@pytest.fixture
def without_user_store(model_store):
    return _client(model_store)


@pytest.fixture
def with_user_store(model_store, tmp_path):
    uri = f"sqlite:///{tmp_path / 'users.db'}"
    open_user_store(uri).put_histories([("ghost", ["no-such-1", "no-such-2"]), ("1", ["50"])])
    return _client(model_store, user_store=uri)


def _ask(client: TestClient, **body) -> dict:
    reply = client.post("/v1/recommendations", json={"k": 3, **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_ids_from_other_data_give_popular_items_and_say_so(without_user_store):
    client, version = without_user_store
    body = _ask(client, history=["i7", "i8"])  # the user's own ids, not this model's
    assert body["strategy"] == "popular" and body["unknown_items"] == ["i7", "i8"]
    assert body["warnings"] == [
        "popular items: none of the request's 2 history ids (see unknown_items) is in the "
        f"catalog of model {version}; ids must be item_id values of the data it was trained on"
    ]
    # one known id is enough: personalised, the unknown one listed, no warning
    body = _ask(client, history=["i7", "50"])
    assert body["strategy"] == "personalized" and body["unknown_items"] == ["i7"]
    assert body["warnings"] == []


def test_a_user_id_without_a_user_store_says_its_history_was_not_read(without_user_store):
    client, _ = without_user_store
    body = _ask(client, user_id="1")
    assert body["strategy"] == "popular" and body["warnings"] == [NO_STORE]
    body = _ask(client, user_id="1", history=["50"])  # personalised from the request alone
    assert body["strategy"] == "personalized" and body["warnings"] == [NO_STORE]
    got = client.get("/v1/users/1/recommendations?k=3").json()
    assert got["strategy"] == "popular" and got["warnings"] == [NO_STORE]


def test_stored_items_the_model_does_not_know_are_named_a_new_user_is_not(with_user_store):
    client, version = with_user_store
    body = _ask(client, user_id="ghost")
    assert body["strategy"] == "popular"
    assert body["warnings"] == [
        f"popular items: none of the user's 2 stored items is in the catalog of model "
        f"{version}; ids must be item_id values of the data it was trained on"
    ]
    assert _ask(client, user_id="1")["strategy"] == "personalized"
    new = _ask(client, user_id="someone-new")  # a cold start is the fallback's purpose
    assert new["strategy"] == "popular" and new["warnings"] == []
