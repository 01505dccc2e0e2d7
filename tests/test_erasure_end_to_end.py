"""Erasure on the embedded local stack (moto plays S3, DynamoDB and SageMaker): a user with
history and events asks to be erased; the next request does not know them; the deletion job
of the next training removes their rows; afterwards their id is in no object of the bucket
and in no record of the table."""

from __future__ import annotations

import io
import json

import boto3
import pandas as pd
import pytest
from lmrec import erasure, registry, store
from lmrec.local.stack import LocalStack
from lmrec.settings import get_settings

from tests.conftest import (
    LEARNABLE_HP,
    call,
    import_function,
    running,
    synthetic_rows,
    write_csv,
)
from tests.test_privacy import files_holding, plain_bytes
from training.batch import run_batch

pytestmark = pytest.mark.e2e

TARGET = "gdpr-Vq93k"  # cannot occur by accident in item ids, versions or numbers


def with_target(rows: list[list], seed_user: str) -> list[list]:
    """The same rows with one synthetic user renamed to TARGET."""
    return [[TARGET if r[0] == seed_user else r[0], r[1], r[2]] for r in rows]


def bucket_objects_holding(stack: LocalStack, needle: str) -> list[str]:
    hits = []
    for obj in store.list_objects(f"{stack.store_uri}/"):
        if needle.encode() in plain_bytes(obj.uri, store.read_bytes(obj.uri)):
            hits.append(obj.uri.removeprefix(f"{stack.store_uri}/"))
    return hits


def test_erasure_on_the_local_stack(tmp_path):
    # moto's backends are per process: another test's stack may have made lmrec-user-store
    stack = LocalStack(
        tmp_path / "stack",
        bucket="lmrec-erasure-e2e",
        table="lmrec-erasure-e2e",
        hyperparameters=LEARNABLE_HP,
    )
    with running(stack):
        # ... and its training jobs: this stack runs only the jobs it starts
        done = boto3.client("sagemaker").list_training_jobs(MaxResults=100)
        stack._ran.update(j["TrainingJobName"] for j in done["TrainingJobSummaries"])
        first = write_csv(
            tmp_path / "d1.csv",
            ["user_id", "item_id", "timestamp"],
            with_target(synthetic_rows(n_users=200, n_items=80, length=15, seed=1), "u7"),
        )
        stack.upload(first, "data/interactions/part-0001.csv")
        assert stack.retrain("retrain_s3_object_created.json")["action"] == "started"
        [decision] = stack.run_pending_jobs()
        assert decision["action"] == "promoted", decision

        get_settings.cache_clear()
        api = import_function("api", "erasure_e2e_api")
        # history (written by the training job from the data) and events
        status, before = call(api, "api_post_recommendations.json", {"user_id": TARGET, "k": 5})
        assert status == 200 and before["strategy"] == "personalized"
        assert before["history_length"] == 15
        status, _ = call(
            api, "api_post_events.json", {"events": [{"user_id": TARGET, "item_id": "i3"}]}
        )
        assert status == 202
        # batch recommendations for every user of the data: an output that holds user ids
        pointer = registry.read_pointer(get_settings().pointer_uri())
        batch = run_batch(
            pointer.bundle_uri,
            f"{stack.store_uri}/batch/",
            data_uri=f"{stack.store_uri}/data/interactions/",
            cache_dir=str(tmp_path / "batch-cache"),
        )
        assert batch["users"] == 200 and batch["rows"] == 2000
        output = "batch/part-00000-of-00001.parquet"
        assert sorted(bucket_objects_holding(stack, TARGET)) == [
            output,
            "data/interactions/part-0001.csv",
        ]

        # erasure: at once in the user store, recorded for the deletion job
        status, body = call(api, "api_delete_events.json", path=f"/v1/users/{TARGET}")
        assert status == 200 and body["deleted"] == 3 and body["erasure_recorded"]
        status, after = call(api, "api_post_recommendations.json", {"user_id": TARGET, "k": 5})
        assert after["strategy"] == "popular" and after["history_length"] == 0
        record = f"erasure/pending/{erasure.user_hash(TARGET)}.json"
        assert sorted(bucket_objects_holding(stack, TARGET)) == [
            output,
            "data/interactions/part-0001.csv",
            record,
        ]

        # the next training starts with the deletion job; a late upload holds rows too
        second = write_csv(
            tmp_path / "d2.csv",
            ["user_id", "item_id", "timestamp"],
            [
                [TARGET, "i5", 1700000000],
                *synthetic_rows(n_users=100, n_items=80, length=15, seed=2, first_user=1000),
            ],
        )
        stack.upload(second, "data/interactions/part-0002.csv")
        started = stack.retrain()
        assert started["action"] == "started", started
        [second_decision] = stack.run_pending_jobs()
        assert second_decision["action"] in ("promoted", "rejected"), second_decision

        # the training data that job read, and everything it wrote, hold none of the rows
        job_dir = stack.workdir / "sagemaker" / started["job_name"]
        assert (job_dir / "input" / "data" / "train").is_dir()
        assert files_holding(job_dir / "input" / "data" / "train", [TARGET]) == {}
        assert files_holding(job_dir / "model", [TARGET]) == {}
        # the batch output keeps everyone else's rows
        kept = pd.read_parquet(io.BytesIO(store.read_bytes(f"{stack.store_uri}/{output}")))
        assert kept["user_id"].nunique() == 199 and len(kept) == 1990
        # nothing in the bucket (data, models, training outputs, histories, batch outputs)
        # holds the id;
        # the request record now keeps only its hash
        assert bucket_objects_holding(stack, TARGET) == []
        done_record = record.replace("/pending/", "/done/")
        done = json.loads(store.read_bytes(f"{stack.store_uri}/{done_record}"))
        assert done["status"] == "done" and done["user_sha256"] == erasure.user_hash(TARGET)
        # nor the user store (every record of every user scanned)
        items = boto3.client("dynamodb").scan(TableName=stack.table)["Items"]
        assert items and TARGET not in json.dumps(items)
        status, later = call(api, "api_post_recommendations.json", {"user_id": TARGET, "k": 5})
        assert later["strategy"] == "popular"
        # the other users keep their histories
        status, other = call(api, "api_post_recommendations.json", {"user_id": "u8", "k": 5})
        assert other["strategy"] == "personalized" and other["history_length"] == 15


def test_a_pending_erasure_is_done_on_the_schedule_without_new_data(tmp_path):
    from lmrec.userstore import open_user_store

    stack = LocalStack(tmp_path / "stack", bucket="lmrec-erasure-tick", table="lmrec-erasure-tick")
    with running(stack):
        done = boto3.client("sagemaker").list_training_jobs(MaxResults=100)
        stack._ran.update(j["TrainingJobName"] for j in done["TrainingJobSummaries"])
        # GIVEN data too small to train on, a user's history, and their erasure request
        rows = with_target(synthetic_rows(n_users=20, n_items=30, length=5, seed=3), "u4")
        stack.upload(
            write_csv(tmp_path / "d.csv", ["user_id", "item_id", "timestamp"], rows),
            "data/interactions/part-0001.csv",
        )
        users = open_user_store(f"dynamodb://{stack.table}")
        users.put_histories([(TARGET, ["i1", "i2"])])
        erasure.record(f"{stack.store_uri}/erasure", TARGET)
        # WHEN the schedule fires, with no new data worth a training
        decision = stack.retrain("retrain_schedule.json")
        assert decision["action"] == "skipped" and decision["erasures_pending"] == 1
        assert decision["erasure_job"], decision
        job = boto3.client("sagemaker").describe_training_job(
            TrainingJobName=decision["erasure_job"]
        )
        # the delay is bounded: one schedule period, then at most this long
        assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
        [promote] = stack.run_pending_jobs()
        assert promote["action"] == "ignored"  # a deletion job writes no model
        # THEN the erasure is done: no row, no history, only the done record's hash
        assert bucket_objects_holding(stack, TARGET) == []
        assert users.recent(TARGET, 10).items() == []
        assert erasure.pending(f"{stack.store_uri}/erasure") == []
        # and a second tick starts nothing
        assert stack.retrain("retrain_schedule.json")["erasure_job"] is None
