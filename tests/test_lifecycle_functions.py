"""Retrain and promote, invoked as `sam local invoke` would, against a moto server
(S3 + SageMaker API)."""

from __future__ import annotations

import copy
import io
import json
import tarfile
import uuid

import boto3
import pytest
from botocore.stub import Stubber
from lmrec import bundle as fmt
from lmrec import registry, store
from lmrec.promote import rollback
from lmrec.recommend import Recommender

from tests.conftest import load_event, sam_invoke, synthetic_rows


@pytest.fixture
def bucket(s3_env):
    name = f"lmrec-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def env_for(bucket: str, **extra) -> dict:
    return {
        "LMREC_STORE_URI": f"s3://{bucket}",
        "LMREC_MODEL_NAME": "lmrec",
        "LMREC_JOB_PREFIX": "lmrec-",
        "LMREC_DATA_URI": f"s3://{bucket}/data/interactions/",
        "LMREC_ITEMS_URI": f"s3://{bucket}/data/items/",  # not one leaked by another test
        "LMREC_OUTPUT_URI": f"s3://{bucket}/training-output",
        "LMREC_TRAINING_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/lmrec-train:1",
        "LMREC_TRAINING_ROLE_ARN": "arn:aws:iam::123456789012:role/lmrec-sagemaker",
        "LMREC_MIN_NEW_INTERACTIONS": "1000",
        **extra,
    }


def upload_interactions(bucket: str, key: str, n_users: int = 100) -> int:
    rows = synthetic_rows(n_users=n_users, length=15)
    body = "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body.encode())
    return len(rows)


def our_jobs() -> list[str]:
    jobs = boto3.client("sagemaker").list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
    return [j["TrainingJobName"] for j in jobs]


def test_replayed_s3_event_starts_exactly_one_job(bucket, monkeypatch):
    upload_interactions(bucket, "data/interactions/part-0.csv")
    event = load_event("retrain_s3_object_created.json")
    before = set(our_jobs())
    results = [
        sam_invoke("RetrainFunction", event, env_for(bucket), monkeypatch) for _ in range(10)
    ]
    started = [r for r in results if r["action"] == "started"]
    assert len(started) == 1 and started[0]["new_interactions"] == 1500
    assert all("already exists" in r["reason"] for r in results[1:])
    new_jobs = set(our_jobs()) - before
    assert new_jobs == {started[0]["job_name"]}
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName=started[0]["job_name"])
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith(
        "data/interactions/"
    )
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 7200


def test_too_few_new_interactions_is_skipped_with_reason(bucket, monkeypatch):
    upload_interactions(bucket, "data/interactions/part-0.csv", n_users=10)  # 150 rows
    result = sam_invoke(
        "RetrainFunction", load_event("retrain_schedule.json"), env_for(bucket), monkeypatch
    )
    assert result["action"] == "skipped" and "150 new interactions" in result["reason"]


def test_job_in_progress_is_skipped(bucket, monkeypatch):
    upload_interactions(bucket, "data/interactions/part-0.csv")
    import importlib.util

    from lmrec.retrain import decide_and_start

    spec = importlib.util.spec_from_file_location("retrain_app", "functions/retrain/app.py")
    app = importlib.util.module_from_spec(spec)
    for k, v in env_for(bucket).items():
        monkeypatch.setenv(k, v)
    spec.loader.exec_module(app)
    # moto marks jobs Completed at once, so "another job is running" comes from a stubbed
    # SageMaker reply (botocore's Stubber: real request validation, canned AWS answers).
    client = boto3.client("sagemaker")
    stub = Stubber(client)
    stub.add_client_error(
        "describe_training_job", "ValidationException", "Requested resource not found"
    )
    stub.add_response(
        "list_training_jobs",
        {
            "TrainingJobSummaries": [
                {
                    "TrainingJobName": "lmrec-aaaaaaaaaaaa",
                    "TrainingJobArn": "arn:aws:sagemaker:us-east-1:"
                    "123456789012:training-job/lmrec-aaaaaaaaaaaa",
                    "CreationTime": 0,
                    "TrainingJobStatus": "InProgress",
                }
            ]
        },
        {"NameContains": "lmrec-", "StatusEquals": "InProgress"},
    )
    with stub:
        result = decide_and_start(app.config_from_env(), client)
    assert result.action == "skipped" and "in progress: lmrec-aaaaaaaaaaaa" in result.reason


def bundle_tar(bundle_dir, version: str | None = None, ndcg_scale: float = 1.0) -> bytes:
    """model.tar.gz of a bundle, optionally as another version with the served model's test
    NDCG@10 moved up (ndcg_scale > 1) or down (< 1): what the gate compares."""
    buf = io.BytesIO()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    if version:
        manifest = copy.deepcopy(manifest)
        manifest["model_version"] = version
        served = fmt.served_metric(manifest)
        full = manifest["metrics"][served]["test"]["full"]
        f = full["ndcg@10"]  # its odds scaled: above or below as asked, inside [0, 1]
        full["ndcg@10"] = f * ndcg_scale / (1 - f + f * ndcg_scale)
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(bundle_dir.iterdir()):
            if path.name == "manifest.json":
                data = json.dumps(manifest).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.add(path, arcname=path.name)
    return buf.getvalue()


def completed(bucket: str, job: str, body: bytes | None) -> dict:
    key = f"training-output/{job}/output/model.tar.gz"
    if body is not None:
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    event = load_event("promote_training_completed.json")
    event["detail"]["TrainingJobName"] = job
    event["detail"]["ModelArtifacts"]["S3ModelArtifacts"] = f"s3://{bucket}/{key}"
    return event


def pointer(bucket: str) -> dict:
    return json.loads(store.read_bytes(f"s3://{bucket}/models/lmrec/production.json"))


def test_promotion_gate_duplicates_and_rollback(bucket, monkeypatch, learned_bundle):
    trained_bundle = learned_bundle
    env = env_for(bucket, LMREC_GATE_TOLERANCE="0.01")
    # GIVEN a first model: it beats popularity, so it is promoted
    first = sam_invoke(
        "PromoteFunction",
        completed(bucket, "lmrec-job1", bundle_tar(trained_bundle)),
        env,
        monkeypatch,
    )
    assert first["action"] == "promoted", first
    v1 = pointer(bucket)["model_version"]
    # the same event again: a no-op
    again = sam_invoke("PromoteFunction", completed(bucket, "lmrec-job1", None), env, monkeypatch)
    assert again["action"] == "duplicate" and pointer(bucket)["model_version"] == v1

    # a clearly worse candidate is refused; the pointer does not move
    worse = sam_invoke(
        "PromoteFunction",
        completed(bucket, "lmrec-job2", bundle_tar(trained_bundle, "v-worse", ndcg_scale=0.5)),
        env,
        monkeypatch,
    )
    assert worse["action"] == "rejected" and "worse than production" in worse["reason"]
    assert pointer(bucket)["model_version"] == v1

    # a corrupt archive is refused
    bad = sam_invoke(
        "PromoteFunction", completed(bucket, "lmrec-job3", b"not a tarball"), env, monkeypatch
    )
    assert bad["action"] == "rejected" and "not a readable gzip tar" in bad["reason"]
    assert pointer(bucket)["model_version"] == v1

    # a failed job is recorded and changes nothing
    failed_event = load_event("promote_training_failed.json")
    failed = sam_invoke("PromoteFunction", failed_event, env, monkeypatch)
    assert failed["action"] == "failed" and "unparsable timestamp" in failed["reason"]
    assert pointer(bucket)["model_version"] == v1

    # an equal-or-better candidate ships, keeping v1 for rollback
    better = sam_invoke(
        "PromoteFunction",
        completed(bucket, "lmrec-job4", bundle_tar(trained_bundle, "v-better", ndcg_scale=1.2)),
        env,
        monkeypatch,
    )
    assert better["action"] == "promoted" and pointer(bucket)["model_version"] == "v-better"
    assert pointer(bucket)["previous"]["model_version"] == v1
    assert pointer(bucket)["source_job"] == "lmrec-job4"

    # rollback points production back at v1, and the API serves it after its refresh
    from lmrec.serving import ModelState
    from lmrec.settings import Settings

    state = ModelState(Settings(store_uri=f"s3://{bucket}", cache_dir=str(trained_bundle.parent)))
    state.refresh()
    assert state.version == "v-better"
    assert rollback(f"s3://{bucket}", "lmrec")["action"] == "rolled back"
    assert pointer(bucket)["model_version"] == v1
    assert pointer(bucket)["rolled_back_from"] == "v-better"
    # twice is once: the bad model does not come back
    assert rollback(f"s3://{bucket}", "lmrec")["action"] == "unchanged"
    assert pointer(bucket)["model_version"] == v1
    state.refresh()
    assert state.version == v1 and isinstance(state.recommender, Recommender)


def test_promote_ignores_other_events_and_jobs(bucket, monkeypatch):
    env = env_for(bucket)
    other = load_event("promote_training_completed.json")
    other["detail"]["TrainingJobName"] = "someone-elses-job"
    assert sam_invoke("PromoteFunction", other, env, monkeypatch)["action"] == "ignored"
    assert (
        sam_invoke("PromoteFunction", {"detail-type": "x"}, env, monkeypatch)["action"] == "ignored"
    )
    with pytest.raises(registry.PointerError):
        rollback(f"s3://{bucket}", "lmrec")  # nothing to roll back to
