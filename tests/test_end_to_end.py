"""The whole loop on the embedded local stack (moto plays AWS; nothing of ours is mocked):
upload -> retrain -> train -> promote -> recommend -> events change the recommendation ->
a deliberately worse training is refused -> a better one ships -> rollback -> the API
serves the previous version."""

from __future__ import annotations

import json

import pytest
from lmrec import store
from lmrec.local.stack import LocalStack
from lmrec.settings import get_settings

from tests.conftest import (
    LEARNABLE_HP,
    LambdaContext,
    import_function,
    load_event,
    running,
    synthetic_rows,
    write_csv,
)

pytestmark = pytest.mark.e2e

# Without transitions: counting alone solves this synthetic walk, so every model would tie
# with them and the gate could not tell a good training from a bad one.
GOOD = {**LEARNABLE_HP, "transitions": "false"}
# Worse: one epoch at a tiny step from a random table (a table started from co-occurrence
# already ranks like counting before any step, item_init).
WORSE = {
    **GOOD,
    **{"epochs": "1", "lr": "0.00001", "student_epochs": "1", "student_lr": "0.00001"},
    "item_init": "random",
}


def ask(api, body: dict) -> dict:
    event = load_event("api_post_recommendations.json")
    event["body"] = json.dumps(body)
    reply = api.handler(event, LambdaContext())
    assert reply["statusCode"] == 200, reply
    return json.loads(reply["body"])


def post_event(api, user: str, item: str) -> None:
    event = load_event("api_post_events.json")
    event["body"] = json.dumps({"events": [{"user_id": user, "item_id": item}]})
    assert api.handler(event, LambdaContext())["statusCode"] == 202


def production(stack) -> str:
    return json.loads(store.read_bytes(f"{stack.store_uri}/models/lmrec/production.json"))[
        "model_version"
    ]


def test_whole_lifecycle(tmp_path):
    stack = LocalStack(tmp_path / "stack", hyperparameters=GOOD, min_new_interactions=1000)
    with running(stack):
        # upload -> retrain -> train -> promote
        first = write_csv(
            tmp_path / "d1.csv",
            ["user_id", "item_id", "timestamp"],
            synthetic_rows(n_users=200, n_items=80, length=15, seed=1),
        )
        stack.upload(first, "data/interactions/part-0001.csv")
        started = stack.retrain("retrain_s3_object_created.json")
        assert started["action"] == "started", started
        assert stack.retrain("retrain_s3_object_created.json")["action"] == "skipped"
        [decision] = stack.run_pending_jobs()
        assert decision["action"] == "promoted", decision
        v1 = production(stack)

        # recommend through the API function
        get_settings.cache_clear()
        api = import_function("api", "e2e_api")
        before = ask(api, {"user_id": "u1", "k": 10})
        assert before["model_version"] == v1 and before["strategy"] == "personalized"

        # a real-time event changes the next recommendation
        top = before["items"][0]["item_id"]
        post_event(api, "u1", top)
        after = ask(api, {"user_id": "u1", "k": 10})
        assert top not in [i["item_id"] for i in after["items"]]
        assert after["history_length"] == before["history_length"] + 1

        # more data, but a deliberately worse training: refused by the gate
        second = write_csv(
            tmp_path / "d2.csv",
            ["user_id", "item_id", "timestamp"],
            synthetic_rows(n_users=100, n_items=80, length=15, seed=2, first_user=1000),
        )
        stack.upload(second, "data/interactions/part-0002.csv")
        stack.hyperparameters = WORSE
        assert stack.retrain()["action"] == "started"
        [refused] = stack.run_pending_jobs()
        assert refused["action"] == "rejected" and "worse than production" in refused["reason"]
        assert refused["basis"] == "paired"  # production scored on the job's own test users
        assert production(stack) == v1

        # better training on more data ships
        third = write_csv(
            tmp_path / "d3.csv",
            ["user_id", "item_id", "timestamp"],
            synthetic_rows(n_users=100, n_items=80, length=15, seed=3, first_user=2000),
        )
        stack.upload(third, "data/interactions/part-0003.csv")
        stack.hyperparameters = {**GOOD, "epochs": "8", "student_epochs": "8"}
        assert stack.retrain()["action"] == "started"
        [shipped] = stack.run_pending_jobs()
        assert shipped["action"] == "promoted" and shipped["basis"] == "paired", shipped
        v3 = production(stack)
        api.state.refresh()
        assert ask(api, {"user_id": "u1"})["model_version"] == v3

        # rollback: production goes back to v1, and the API serves it after its refresh
        from lmrec.promote import rollback

        rollback(stack.store_uri, "lmrec")
        api.state.refresh()
        assert production(stack) == v1
        assert ask(api, {"user_id": "u1"})["model_version"] == v1
