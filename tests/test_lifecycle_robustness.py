"""Promotion, rollback and retraining when they race, replay, meet a broken pointer or a
failed job: each fault with the outcome an operator sees."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from lmrec import aws, cas, registry, store
from lmrec.promote import Promoter
from pydantic import ValidationError

from tests.test_api_robustness import poison, tampered
from tests.test_lifecycle_functions import bundle_tar


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path, s3_env, monkeypatch):
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    name = f"lmrec-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    # moto checks If-Match / If-None-Match, but its check and its write are two steps that
    # threads can interleave; S3 does both atomically. A lock around moto's PutObject
    # handler gives the stand-in S3's atomicity (the rule under test stays moto's).
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    original = S3Response.put_object

    def atomic_put(self, *args, **kwargs):
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(S3Response, "put_object", atomic_put)
    return f"s3://{name}"


def artifact(root: str, job: str, body: bytes) -> str:
    uri = f"{root}/training-output/{job}/output/model.tar.gz"
    store.write_bytes(uri, body)
    return uri


def production(root: str) -> dict:
    return json.loads(store.read_bytes(f"{root}/models/lmrec/production.json"))


def run_all(fns) -> list:
    out: list = [None] * len(fns)

    def run(i):
        out[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


# --- compare-and-swap -----------------------------------------------------------------------


def test_pointer_writes_are_conditional_on_s3(s3_env):
    """The exact parameters S3 sees: If-None-Match '*' for the first pointer, If-Match with
    the ETag read for an update; a 412 means another writer won (not an error)."""
    client = boto3.client("s3")
    stub = Stubber(client)
    stub.add_response(
        "put_object", {"ETag": '"a"'}, {"Bucket": "b", "Key": "k", "Body": b"1", "IfNoneMatch": "*"}
    )
    stub.add_response(
        "put_object", {"ETag": '"c"'}, {"Bucket": "b", "Key": "k", "Body": b"2", "IfMatch": '"a"'}
    )
    stub.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
    stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    with stub, pytest.MonkeyPatch.context() as mp:
        mp.setitem(aws._clients, "s3", (store.s3_endpoint(), client))
        assert cas.write("s3://b/k", b"1", None) is True
        assert cas.write("s3://b/k", b"2", '"a"') is True
        assert cas.write("s3://b/k", b"3", '"a"') is False
        assert cas.write("s3://b/k", b"4", '"a"') is False
    stub.assert_no_pending_responses()


def test_moto_enforces_the_conditions_and_so_does_the_file_store(root):
    uri = f"{root}/models/lmrec/production.json"
    assert cas.write(uri, b"first", None) is True
    assert cas.write(uri, b"again", None) is False  # it exists now
    _, tag = cas.read(uri)
    assert cas.write(uri, b"second", tag) is True
    assert cas.write(uri, b"stale", tag) is False  # the tag moved on
    assert cas.read(uri)[0] == b"second"


def test_ten_racing_promotions_leave_the_best_and_keep_the_chain(root, learned_bundle, tmp_path):
    scales = [1.0 + 0.05 * i for i in range(10)]
    jobs = [
        (f"lmrec-race{i}", artifact(root, f"race{i}", bundle_tar(learned_bundle, f"v-race{i}", s)))
        for i, s in enumerate(scales)
    ]
    promoter = Promoter(root, "lmrec", tolerance=0.0)
    began = time.perf_counter()
    decisions = run_all([lambda j=j, a=a: promoter.on_completed(j, a) for j, a in jobs])
    seconds = time.perf_counter() - began
    final = production(root)
    promoted = [d.model_version for d in decisions if d.action == "promoted"]
    print(
        f"10 racing promotions ({root[:4]}): {len(promoted)} promoted in turn, "
        f"final {final['model_version']}, {seconds:.1f} s"
    )
    assert final["model_version"] == "v-race9"  # the best
    assert all(d.action in ("promoted", "rejected") for d in decisions), decisions
    chain = [final["model_version"]] + [p["model_version"] for p in final["history"]]
    assert set(promoted) <= set(chain)  # nothing that served was dropped from the chain
    assert chain == sorted(chain, key=lambda v: -int(v.removeprefix("v-race")))


def test_ten_concurrent_replays_promote_once(root, learned_bundle):
    uri = artifact(root, "replay", bundle_tar(learned_bundle, "v-replay"))
    promoter = Promoter(root, "lmrec", tolerance=0.0)
    decisions = run_all([lambda: promoter.on_completed("lmrec-replay", uri)] * 10)
    actions = sorted(d.action for d in decisions)
    assert actions.count("promoted") == 1 and actions.count("duplicate") == 9, actions
    assert production(root)["model_version"] == "v-replay"


# --- rollback and broken pointers -----------------------------------------------------------


def promote(root: str, bundle: Path, version: str, scale: float) -> str:
    decision = Promoter(root, "lmrec").on_completed(
        f"lmrec-{version}", artifact(root, version, bundle_tar(bundle, version, scale))
    )
    assert decision.action == "promoted", decision
    return version


def cli(*argv: str) -> tuple[int, str]:
    import contextlib

    from tests.conftest import lmrec_cli as main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, (out.getvalue() + err.getvalue()).strip()


def test_rollback_to_a_version_twice_is_the_same_production(tmp_path, learned_bundle):
    root = f"file://{tmp_path / 'store'}"
    promote(root, learned_bundle, "v1", 1.0)
    promote(root, learned_bundle, "v2", 1.1)
    promote(root, learned_bundle, "v3", 1.2)
    code, out = cli("rollback", "--store", root, "--to", "v1")
    assert code == 0 and json.loads(out)["action"] == "rolled back"
    code, out = cli("rollback", "--store", root, "--to", "v1")
    assert code == 0 and json.loads(out) == {
        "action": "unchanged",
        "model_version": "v1",
        "rolled_back_from": "v3",
    }
    assert production(root)["model_version"] == "v1"
    # a plain rollback after a rollback changes nothing either (the bad model stays out)
    code, out = cli("rollback", "--store", root)
    assert code == 0 and json.loads(out)["action"] == "unchanged"
    assert production(root)["model_version"] == "v1"
    assert [p["model_version"] for p in production(root)["history"]] == ["v3", "v2"]
    code, out = cli("rollback", "--store", root, "--to", "v-never")
    assert code == 2 and "published versions: v1, v2, v3" in out and out.count("\n") == 0


@pytest.mark.parametrize("damage", ["corrupt", "dangling"])
def test_a_broken_pointer_is_reported_and_repaired(tmp_path, learned_bundle, damage, monkeypatch):
    root = f"file://{tmp_path / 'store'}"
    promote(root, learned_bundle, "v1", 1.0)
    pointer_path = tmp_path / "store" / "models" / "lmrec" / "production.json"
    if damage == "corrupt":
        pointer_path.write_text('{"model_version": "v1", "bundle_u')
    else:
        body = production(root) | {
            "model_version": "v-gone",
            "bundle_uri": f"{root}/models/lmrec/v-gone",
        }
        pointer_path.write_text(json.dumps(body))
    # rollback without a version says what is wrong and how to get out (one line, exit 2)
    if damage == "corrupt":
        code, out = cli("rollback", "--store", root)
        assert code == 2 and "not a valid production pointer" in out and "--to" in out
    # retraining still decides (all data counts as new), it does not crash
    from lmrec.retrain import production_data_time
    from lmrec.settings import RetrainSettings

    settings = RetrainSettings(
        store_uri=root, data_uri=root, output_uri=root, training_image="i", training_role_arn="r"
    )
    assert production_data_time(settings) is None
    # a promotion repairs it, and says so
    decision = Promoter(root, "lmrec").on_completed(
        "lmrec-fix", artifact(root, "fix", bundle_tar(learned_bundle, "v-fix", 1.1))
    )
    assert decision.action == "promoted" and "broken production pointer" in decision.reason
    assert production(root)["model_version"] == "v-fix"
    # and a rollback by name repairs it too
    pointer_path.write_text("not json")
    code, out = cli("rollback", "--store", root, "--to", "v1")
    assert code == 0 and production(root)["model_version"] == "v1"


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        ({"config": {"n_heads": 3}}, "n_heads 3 does not divide"),
        ({"weights": poison(float("nan"))}, "holds NaN"),
        ({"weights": poison(float("inf"))}, "holds infinite"),
    ],
)
def test_promotion_refuses_a_bundle_that_cannot_serve(tmp_path, learned_bundle, change, cause):
    root = f"file://{tmp_path / 'store'}"
    bad = tampered(learned_bundle, tmp_path / "bad", "v-bad", **change)
    decision = Promoter(root, "lmrec").on_completed(
        "lmrec-bad", artifact(root, "bad", bundle_tar(bad, "v-bad"))
    )
    assert decision.action == "rejected" and cause in decision.reason
    with pytest.raises(registry.NoPointer):
        registry.read_pointer(f"{root}/models/lmrec/production.json")


# --- failed training jobs -------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path):
    from tests.conftest import synthetic_rows, write_csv

    write_csv(
        tmp_path / "data" / "part-0.csv",
        ["user_id", "item_id", "timestamp"],
        synthetic_rows(n_users=100),
    )
    return tmp_path


def retrain_settings(root: Path, **extra):
    from lmrec.settings import RetrainSettings

    return RetrainSettings(
        store_uri=f"file://{root / 'store'}",
        data_uri=f"file://{root / 'data'}",
        output_uri="s3://out/training-output",
        training_image="123.dkr.ecr.us-east-1.amazonaws.com/lmrec:1",
        training_role_arn="arn:aws:iam::123456789012:role/x",
        retry_backoff_seconds=600,
        **extra,
    )


def failed_job(name: str, ended: datetime) -> dict:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "TrainingJobStatus": "Failed",
        "FailureReason": "AlgorithmError: out of memory",
        "SecondaryStatus": "Failed",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ModelArtifacts": {"S3ModelArtifacts": ""},
        "CreationTime": ended,
        "TrainingEndTime": ended,
        "StoppingCondition": {},
        "ResourceConfig": {"VolumeSizeInGB": 30},
    }


def test_a_failed_job_is_retried_after_the_back_off_or_at_once_with_new_settings(data_root, s3_env):
    from lmrec.retrain import attempt_name, decide_and_start, job_identity, job_name

    cfg = retrain_settings(data_root)
    client = boto3.client("sagemaker")
    ended = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    # the decision needs the base name: it derives from the data version and the identity
    from lmrec.retrain import data_version

    version = data_version(
        [o for o in store.list_objects(cfg.data_uri) if store.is_data_file(o.uri)]
    )
    base = job_name(cfg.job_prefix, f"{version}-{job_identity(cfg)}")
    stub = Stubber(client)
    # 1) within the back-off: skipped, saying when
    stub.add_response("describe_training_job", failed_job(base, ended), {"TrainingJobName": base})
    stub.add_client_error(
        "describe_training_job",
        "ValidationException",
        expected_params={"TrainingJobName": attempt_name(base, 2)},
    )
    # 2) after the back-off: attempt 2, saying it is a retry
    stub.add_response("describe_training_job", failed_job(base, ended), {"TrainingJobName": base})
    stub.add_client_error(
        "describe_training_job",
        "ValidationException",
        expected_params={"TrainingJobName": attempt_name(base, 2)},
    )
    stub.add_response(
        "list_training_jobs",
        {"TrainingJobSummaries": []},
        {"NameContains": "lmrec-", "StatusEquals": "InProgress"},
    )
    stub.add_response(
        "create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x"}
    )
    with stub:
        soon = decide_and_start(cfg, client, now=ended.timestamp() + 60)
        later = decide_and_start(cfg, client, now=ended.timestamp() + 601)
    assert soon.action == "skipped" and "retry after the back-off, in 540 s" in soon.reason
    assert later.action == "started" and later.job_name == f"{base}-r2"
    assert "retry 2" in later.reason and "back-off of 600 s has passed" in later.reason
    # 3) new hyperparameters: another job at once, saying why
    changed = retrain_settings(data_root, hyperparameters={"epochs": 20})
    new_base = job_name(cfg.job_prefix, f"{version}-{job_identity(changed)}")
    assert new_base != base
    stub = Stubber(client)
    stub.add_client_error(
        "describe_training_job",
        "ValidationException",
        expected_params={"TrainingJobName": new_base},
    )
    stub.add_response(
        "list_training_jobs",
        {"TrainingJobSummaries": []},
        {"NameContains": "lmrec-", "StatusEquals": "InProgress"},
    )
    stub.add_response(
        "list_training_jobs",
        {
            "TrainingJobSummaries": [
                {
                    "TrainingJobName": base,
                    "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/b",
                    "CreationTime": ended,
                    "TrainingJobStatus": "Failed",
                }
            ]
        },
        {"NameContains": job_name(cfg.job_prefix, version), "MaxResults": 100},
    )
    stub.add_response(
        "create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/y"}
    )
    with stub:
        fresh = decide_and_start(changed, client, now=ended.timestamp() + 60)
    assert fresh.action == "started" and fresh.job_name == new_base
    assert "new hyperparameters or image" in fresh.reason


# --- settings and events --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "values", "fragment"),
    [
        ("api", {"aws_read_timeout": -1}, "greater than 0"),
        ("api", {"aws_connect_timeout": 0}, "greater than 0"),
        (
            "api",
            {"aws_read_timeout": 5, "aws_max_attempts": 3},
            "not less than the function timeout",
        ),
        ("api", {"user_store_deadline_seconds": 12}, "must be less than the function timeout"),
        ("api", {"auth": "open"}, "'none', 'iam' or 'jwt'"),
        ("promote", {"gate_tolerance": -0.1}, "greater than or equal to 0"),
        ("retrain", {"retry_backoff_seconds": -5}, "greater than or equal to 0"),
        # a training job's own budget is at least 480 s (training/plan.py GOAL_MIN)
        ("retrain", {"max_runtime_seconds": 600}, "greater than or equal to 900"),
    ],
)
def test_bad_time_bounds_fail_fast(kind, values, fragment):
    from lmrec.settings import ApiSettings, PromoteSettings, RetrainSettings

    required = {
        "data_uri": "s3://b/d",
        "output_uri": "s3://b/o",
        "training_image": "i",
        "training_role_arn": "r",
    }
    cls = {"api": ApiSettings, "promote": PromoteSettings, "retrain": RetrainSettings}[kind]
    with pytest.raises(ValidationError) as err:
        cls(**values, **(required if kind == "retrain" else {}))
    assert fragment in str(err.value)


def test_the_pointer_path_is_built_in_one_place():
    import re

    root = Path(__file__).resolve().parents[1]
    built = re.compile(r"production\.json[\"']")  # the end of a string literal: a path built
    hits = [
        f"{path.relative_to(root)}:{n}"
        for folder in ("layers", "functions", "training")
        for path in (root / folder).rglob("*.py")
        if path.name != "settings.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if built.search(line)
    ]
    assert hits == [], hits


@pytest.mark.parametrize(
    "event",
    [{}, {"detail-type": "x"}, [1, 2], None, {"source": "aws.s3", "detail-type": "Object Created"}],
)
def test_bad_events_get_a_clear_answer_not_a_crash(event, monkeypatch):
    from tests.conftest import LambdaContext, import_function

    monkeypatch.setenv("LMREC_STORE_URI", "s3://b")
    for name, key in (("promote", "reason"), ("retrain", "reason")):
        fn = import_function(name, f"fn_{name}_bad_events")
        reply = fn.handler(event, LambdaContext())
        assert reply["action"] in ("ignored", "skipped") and reply[key].startswith("not a"), reply


@pytest.mark.slow  # tens of seconds: make test-slow and CI run it
def test_a_60mb_bad_csv_line_is_not_echoed_whole(tmp_path):
    from tests.conftest import run_training

    data = tmp_path / "train" / "interactions.csv"
    data.parent.mkdir()
    rows = "".join(f"u{u},i{u % 7},{1_600_000_000 + u}\n" for u in range(50))
    data.write_text(f"user_id,item_id,timestamp\n{rows}u9,i9,{'x' * 60_000_000}\n")
    out = tmp_path / "out" / "model"
    proc = run_training(["train", "--data", str(data), "--output", str(out)])
    failures = [p for p in tmp_path.rglob("failure") if p.is_file()]
    assert proc.returncode == 2 and "unparsable timestamp" in proc.stderr
    assert len(proc.stderr) + len(proc.stdout) < 10_000
    assert "xxxxxxxx" not in proc.stderr  # the error names the column and line, not the value
    assert all(p.stat().st_size < 5_000 for p in failures)


def test_every_aws_client_comes_from_the_budgeted_factory(monkeypatch):
    import re

    from lmrec import aws
    from lmrec.settings import ApiSettings, PromoteSettings

    monkeypatch.setattr(aws, "_budget", aws.budget())  # restored after the test
    root = Path(__file__).resolve().parents[1]
    direct = re.compile(r"boto3\.client\(|create_client\(")
    offenders = [
        str(p.relative_to(root))
        for folder in ("layers", "functions")
        for p in (root / folder).rglob("*.py")
        # lmrec/local is the development stand-in (moto set-up), not a function's runtime
        if p.name != "aws.py" and "local" not in p.parts and direct.search(p.read_text())
    ]
    assert offenders == []
    api = aws.configure(ApiSettings())
    config = aws.client_config()
    assert (config.connect_timeout, config.read_timeout) == (0.5, 1.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert api.worst_case_seconds() == 3.0 < ApiSettings().function_timeout_seconds
    promote = aws.configure(PromoteSettings(store_uri="s3://b"))
    assert promote.worst_case_seconds() < 300


def test_each_function_knows_its_timeout_and_its_budget_fits():
    from lmrec.settings import ApiSettings, PromoteSettings, RetrainSettings

    from tests.conftest import load_template

    template = load_template()
    resources, params = template["Resources"], template["Parameters"]
    api = resources["ApiFunction"]["Properties"]
    env = api["Environment"]["Variables"]
    assert env["LMREC_FUNCTION_TIMEOUT_SECONDS"] == api["Timeout"] == {"!Ref": "ApiTimeout"}
    timeout = float(params["ApiTimeout"]["Default"])
    assert ApiSettings(function_timeout_seconds=timeout).aws_call_budget_seconds() < timeout
    for name, cls in (("PromoteFunction", PromoteSettings), ("RetrainFunction", RetrainSettings)):
        seconds = float(resources[name]["Properties"]["Timeout"])
        assert seconds == cls.model_fields["function_timeout_seconds"].default
