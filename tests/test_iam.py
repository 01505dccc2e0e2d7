"""The IAM judge itself: its evaluation rules, and that it fails a template that lacks what a
function calls (here: PromoteFunction without s3:ListBucket, which turns the very first
promotion's read of a missing key into a 403 on a real account).

Every test that invokes a function is judged by tests/conftest.py's
aws_calls_allowed_by_template fixture; these tests show the judge can fail."""

from __future__ import annotations

import uuid

import boto3
import pytest

from tests.aws_calls import Call, judge, requests_for, role_statements
from tests.conftest import load_event, sam_invoke
from tests.iam_policy import Request, evaluate
from tests.sam_template import cfn_template, env_names

ALLOW_MODELS = {
    "Sid": "Models",
    "Effect": "Allow",
    "Action": ["s3:GetObject"],
    "Resource": "arn:aws:s3:::b/models/lmrec/*",
}
LIST_DATA = {
    "Sid": "ListData",
    "Effect": "Allow",
    "Action": "s3:ListBucket",
    "Resource": "arn:aws:s3:::b",
    "Condition": {"StringLike": {"s3:prefix": ["data/*"]}},
}


def test_actions_match_case_insensitively_resources_by_wildcard():
    assert evaluate(
        [ALLOW_MODELS], Request("S3:getobject", "arn:aws:s3:::b/models/lmrec/x")
    ).allowed
    assert not evaluate(
        [ALLOW_MODELS], Request("s3:GetObject", "arn:aws:s3:::b/models/other/x")
    ).allowed
    assert not evaluate(
        [ALLOW_MODELS], Request("s3:PutObject", "arn:aws:s3:::b/models/lmrec/x")
    ).allowed
    # a "." in an ARN is a literal, not any character
    dotted = {**ALLOW_MODELS, "Resource": "arn:aws:s3:::b.c/*"}
    assert not evaluate([dotted], Request("s3:GetObject", "arn:aws:s3:::bxc/k")).allowed


def test_conditions_need_their_key_and_deny_wins():
    listing = Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "data/interactions/"})
    assert evaluate([LIST_DATA], listing).allowed
    elsewhere = Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "models/"})
    assert not evaluate([LIST_DATA], elsewhere).allowed
    # the ListBucket S3 checks to answer a missing key with 404 has no prefix: not allowed
    assert not evaluate([LIST_DATA], Request("s3:ListBucket", "arn:aws:s3:::b")).allowed
    deny = {
        "Effect": "Deny",
        "Action": "s3:*",
        "Resource": "*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    plain_http = {"s3:prefix": "data/x", "aws:SecureTransport": "false"}
    assert not evaluate(
        [LIST_DATA, deny], Request("s3:ListBucket", "arn:aws:s3:::b", plain_http)
    ).allowed


def test_an_unknown_condition_operator_is_an_error_not_an_allow():
    odd = {**LIST_DATA, "Condition": {"NumericLessThan": {"s3:max-keys": "10"}}}
    with pytest.raises(ValueError, match="NumericLessThan"):
        evaluate([odd], Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:max-keys": "5"}))


def test_a_missing_key_needs_list_bucket_and_an_unmapped_call_is_reported():
    call = Call("PromoteFunction", "s3", "GetObject", {"Bucket": "b", "Key": "k"}, 404, "us-east-1")
    assert [r.action for r in requests_for(call)] == ["s3:GetObject", "s3:ListBucket"]
    odd = Call("ApiFunction", "kms", "Decrypt", {}, 200, "us-east-1")
    with pytest.raises(LookupError, match=r"teach tests/aws_calls\.py"):
        requests_for(odd)


def without_statement(function: str, sid: str) -> dict:
    template = cfn_template()
    policies = template["Resources"][function]["Properties"]["Policies"]
    for policy in policies:
        policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != sid]
    return template


@pytest.fixture
def promote_failed_job(s3_env, monkeypatch, aws_calls_allowed_by_template):
    """PromoteFunction handling a failed job on a fresh bucket: it reads the job's decision
    record, which does not exist yet (404), and writes it."""
    bucket = f"lmrec-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    env = {"LMREC_STORE_URI": f"s3://{bucket}", "LMREC_MODEL_NAME": "lmrec"}
    env["LMREC_JOB_PREFIX"] = "lmrec-"
    result = sam_invoke(
        "PromoteFunction", load_event("promote_training_failed.json"), env, monkeypatch
    )
    assert result["action"] == "failed", result
    return [c for c in aws_calls_allowed_by_template if c.principal == "PromoteFunction"]


def test_promote_without_list_bucket_is_refused(promote_failed_job):
    calls = promote_failed_job
    assert any(c.status == 404 for c in calls)  # the missing decision record
    # WHEN judged against template.yaml THEN every call is allowed
    assert judge(calls)[1] == []
    # WHEN judged against the template without PromoteFunction's s3:ListBucket
    _, failures = judge(calls, template=without_statement("PromoteFunction", "MissingKeysAre404"))
    # THEN it fails, naming the permission, the reason and the statement to add
    assert failures, "the judge accepted a role that cannot read a missing key"
    text = "\n".join(failures)
    assert "PromoteFunction needs s3:ListBucket on arn:aws:s3:::lmrec-" in text
    assert "answers 404 only with s3:ListBucket on the bucket (403 AccessDenied without it)" in text
    assert "add to PromoteFunction's Policies in template.yaml:" in text
    assert "Action: [s3:ListBucket]\n    Resource: !GetAtt DataBucket.Arn" in text


def test_every_role_resolves_to_concrete_statements():
    names = env_names({})
    for principal in ("ApiFunction", "RetrainFunction", "PromoteFunction", "SageMakerRole"):
        statements = role_statements(principal, names)
        assert statements and all("${" not in str(st) for st in statements), principal


def test_the_training_containers_own_calls_are_judged_as_its_role(s3_env, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests import aws_calls

    # GIVEN a process started while the training job acts (as LocalStack.run_job starts the
    # container), which lists its data and writes where the training role may not
    bucket = f"lmrec-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    monkeypatch.setenv("LMREC_STORE_URI", f"s3://{bucket}")
    code = (
        "import boto3; s3 = boto3.client('s3'); "
        f"s3.list_objects_v2(Bucket='{bucket}', Prefix='data/'); "
        f"s3.put_object(Bucket='{bucket}', Key='models/lmrec/x', Body=b'x')"
    )

    def container():
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    aws_calls.acting(aws_calls.TRAINING, container, children=True)()
    # THEN its calls are recorded for the judge
    log = Path(os.environ[aws_calls.CHILD_FILE_ENV])
    calls = aws_calls.child_calls(log)
    assert [(c.principal, c.operation) for c in calls] == [
        ("SageMakerRole", "ListObjectsV2"),
        ("SageMakerRole", "PutObject"),
    ]
    _, failures = judge(calls)
    assert len(failures) == 1 and failures[0].startswith("SageMakerRole needs s3:PutObject")
    log.unlink()  # judged here: the fixture would fail the test for the refused write
