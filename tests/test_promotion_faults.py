"""Promotion and retrain under faults a hostile review found (helper-45): a lost decision
record, a rollback racing a promotion, figures that are not numbers, paired records that
disagree with themselves, corrupt archives, a version name reused, odd artifact URIs."""

from __future__ import annotations

import gzip
import json
import math
import random
import shutil
from pathlib import Path

import pytest
from lmrec import bundle as fmt
from lmrec import registry, store
from lmrec.promote import Promoter, gate, rollback, safe_extract

from tests.test_lifecycle_functions import bundle_tar
from tests.test_lifecycle_robustness import artifact, cli, production


def promote(root: str, bundle: Path, version: str, job: str | None = None, scale: float = 1.0):
    job = job or f"lmrec-{version}"
    uri = artifact(root, job, bundle_tar(bundle, version, scale))
    return Promoter(root, "lmrec").on_completed(job, uri)


def decision_path(tmp_path: Path, job: str) -> Path:
    return tmp_path / "store" / "models" / "lmrec" / "decisions" / f"{job}.json"


def test_a_replay_after_a_lost_record_and_a_rollback_does_not_bring_the_model_back(
    tmp_path, learned_bundle, monkeypatch
):
    root = f"file://{tmp_path / 'store'}"
    assert promote(root, learned_bundle, "v1").action == "promoted"
    # GIVEN v2's switch succeeds but its decision record is never written (a timeout, a kill)
    from lmrec import cas

    real = cas.write

    def lost(uri, data, expected):
        if "/decisions/lmrec-job2" in str(uri):
            raise store.StoreError("PutObject timed out")
        return real(uri, data, expected)

    monkeypatch.setattr(cas, "write", lost)
    with pytest.raises(store.StoreError):
        promote(root, learned_bundle, "v2", job="lmrec-job2", scale=1.1)
    monkeypatch.setattr(cas, "write", real)
    assert production(root)["model_version"] == "v2"
    # WHEN Lambda retries: the duplicate is recorded now, so later replays are no-ops
    retry = promote(root, learned_bundle, "v2", job="lmrec-job2", scale=1.1)
    assert retry.action == "duplicate"
    assert json.loads(decision_path(tmp_path, "lmrec-job2").read_text())["action"] == "duplicate"
    # AND even with every record lost, a replay after a rollback does not undo the rollback
    decision_path(tmp_path, "lmrec-job2").unlink()
    assert rollback(root, "lmrec")["model_version"] == "v1"
    replay = promote(root, learned_bundle, "v2", job="lmrec-job2", scale=1.1)
    assert replay.action == "rejected" and "was production before" in replay.reason
    assert "rollback --to v2" in replay.reason
    assert production(root)["model_version"] == "v1"


def test_a_plain_rollback_never_serves_the_model_it_was_meant_to_remove(
    tmp_path, learned_bundle, monkeypatch
):
    root = f"file://{tmp_path / 'store'}"
    promote(root, learned_bundle, "v1")
    promote(root, learned_bundle, "v2", scale=1.1)
    # GIVEN v3 is promoted between the rollback's read of production (v2) and its write
    from lmrec import promote as promote_module

    real_target = promote_module._target

    def racing(store_uri, model_name, version):
        if production(root)["model_version"] == "v2":
            assert promote(root, learned_bundle, "v3", scale=1.2).action == "promoted"
        return real_target(store_uri, model_name, version)

    monkeypatch.setattr(promote_module, "_target", racing)
    # THEN the rollback changes nothing and says why, and v3 serves
    with pytest.raises(registry.PointerError, match="changed from v2 to v3 while rolling back"):
        rollback(root, "lmrec")
    assert production(root)["model_version"] == "v3"


SERVED = {"model": "student", "transitions_weight": 0, "weights": "s.safetensors"}


def manifest(figure, popularity=0.05) -> dict:
    rows = {"student": figure, "popularity": popularity}
    return {
        "served": SERVED,
        "metrics": {k: {"test": {"full": {"ndcg@10": v}}} for k, v in rows.items()},
    }


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e308, -0.1, 1.5, True, "0.9"])
def test_the_gate_takes_only_numbers_in_0_1(bad):
    # a first model, against popularity
    verdict = gate(manifest(bad), None, 0.0)
    assert not verdict.accept and "no test NDCG@10 in [0, 1]" in verdict.reason
    # against a production without a paired record
    assert not gate(manifest(bad), manifest(0.3), 0.0, "v1").accept
    # a popularity figure that is not a number is no baseline to beat
    first = gate(manifest(0.3, popularity=bad), None, 0.0)
    assert not first.accept and "no popularity baseline" in first.reason
    assert "NaN" not in json.dumps(first.__dict__)


def paired_record(**change) -> dict:
    record = {
        "production_version": "v1",
        "split": "loo",
        "users": 100,
        "candidate": {"ndcg@10": 0.3},
        "production": {"ndcg@10": 0.1},
        "difference": {"mean": 0.2, "ci95": [0.1, 0.3]},
    }
    for key, value in change.items():
        if value is None:
            del record[key]
        else:
            record[key] = value
    return record


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"difference": {"mean": 0.05, "ci95": [0.01, 0.09]}}, "does not match candidate"),
        ({"difference": {"mean": 0.2, "ci95": [0.25, 0.3]}}, "does not match candidate"),
        ({"users": True}, "users True"),
        ({"users": -7}, "users -7"),
        ({"users": 1}, "at least 2"),
        ({"candidate": {"ndcg@10": 5.0}}, "not a number in [0, 1]"),
        (
            {"candidate": {"ndcg@10": 0.9}, "difference": {"mean": 0.8, "ci95": [0.7, 0.9]}},
            "0.900000 is not the manifest's 0.3",
        ),
        ({"difference": {"mean": math.nan, "ci95": [0.1, 0.3]}}, "three finite numbers"),
        ({"split": "time"}, "on a time split, not the candidate's loo"),
    ],
)
def test_a_paired_record_that_disagrees_with_itself_or_the_manifest_is_not_used(change, said):
    candidate = manifest(0.3) | {"champion": paired_record(**change)}
    verdict = gate(candidate, manifest(0.29), 0.0, "v1")
    assert verdict.basis == "own splits" and said in verdict.reason, verdict.reason
    # the same record, whole, is the paired comparison
    whole = manifest(0.3) | {"champion": paired_record()}
    assert gate(whole, manifest(0.29), 0.0, "v1").basis == "paired"


def test_a_record_from_before_the_split_key_and_ties_counted_in_expectation_are_paired():
    # a job from before records named their split: loo, as a manifest without one
    old = {k: v for k, v in paired_record().items() if k != "split"}
    assert gate(manifest(0.3) | {"champion": old}, manifest(0.29), 0.0, "v1").basis == "paired"
    on_time = manifest(0.3) | {"champion": old, "split": {"name": "time"}}
    assert gate(on_time, manifest(0.29), 0.0, "v1").basis == "own splits"
    # the record counts ties in expectation, the manifest draws them (bf16 on a GPU ties)
    tied = paired_record(
        candidate={"ndcg@10": 0.300015}, difference={"mean": 0.200015, "ci95": [0.1, 0.3]}
    )
    assert gate(manifest(0.3) | {"champion": tied}, manifest(0.29), 0.0, "v1").basis == "paired"


def test_two_plain_rollbacks_at_once_roll_back_once(tmp_path, learned_bundle, monkeypatch):
    root = f"file://{tmp_path / 'store'}"
    promote(root, learned_bundle, "v1")
    promote(root, learned_bundle, "v2", scale=1.1)
    promote(root, learned_bundle, "v3", scale=1.2)
    from lmrec import promote as promote_module

    real_target = promote_module._target

    def racing(store_uri, model_name, version):  # the other operator's rollback lands first
        if production(root)["model_version"] == "v3":
            monkeypatch.setattr(promote_module, "_target", real_target)
            assert rollback(root, "lmrec")["action"] == "rolled back"
        return real_target(store_uri, model_name, version)

    monkeypatch.setattr(promote_module, "_target", racing)
    assert rollback(root, "lmrec")["action"] == "unchanged"
    assert production(root)["model_version"] == "v2"  # once, not twice


def test_a_late_delivery_does_not_overwrite_the_record_of_the_one_that_switched(
    tmp_path, learned_bundle
):
    root = f"file://{tmp_path / 'store'}"
    assert promote(root, learned_bundle, "v1").action == "promoted"
    record = decision_path(tmp_path, "lmrec-v1")
    first = json.loads(record.read_text())
    # a second delivery of v1's event that read no record before the first wrote it, and
    # decides after v2 replaced v1
    assert promote(root, learned_bundle, "v2", scale=1.1).action == "promoted"
    late = Promoter(root, "lmrec")
    late.previous_decision = lambda job: None  # type: ignore[method-assign]
    uri = artifact(root, "lmrec-v1", bundle_tar(learned_bundle, "v1"))
    assert late.on_completed("lmrec-v1", uri).action == "rejected"  # was production before
    assert json.loads(record.read_text()) == first  # the record still says promoted


def test_every_corruption_of_an_archive_is_a_bad_artifact(tmp_path, learned_bundle):
    body = bundle_tar(learned_bundle, "v-fuzz")
    rng = random.Random(1)
    kinds = set()
    for trial in range(200):
        damaged = bytearray(body)
        at = rng.randrange(20, len(damaged))
        for i in range(at, min(len(damaged), at + rng.choice([1, 2, 8]))):
            damaged[i] = rng.randrange(256)
        archive = tmp_path / f"{trial}.tar.gz"
        archive.write_bytes(bytes(damaged))
        dest = tmp_path / f"x{trial}"
        dest.mkdir()
        try:
            safe_extract(archive, dest)
        except fmt.BundleError as exc:  # never zlib.error or another escape
            kinds.add(str(exc).split(":")[1].strip()[:20])
        shutil.rmtree(dest)
        archive.unlink()
    assert kinds  # most corruptions are caught by the reader, each as a BundleError


@pytest.mark.parametrize("body", [[1, 2], {"served": {}}, {"served": {"weights": "w"}}])
def test_a_production_manifest_that_is_json_but_no_manifest_is_a_broken_production(
    tmp_path, learned_bundle, body
):
    root = f"file://{tmp_path / 'store'}"
    promote(root, learned_bundle, "v1")
    (tmp_path / "store" / "models" / "lmrec" / "v1" / fmt.MANIFEST).write_text(json.dumps(body))
    decision = promote(root, learned_bundle, "v2")
    assert decision.action == "promoted" and "broken production pointer" in decision.reason
    assert "not a bundle manifest" in decision.reason
    assert production(root)["model_version"] == "v2"


def test_rollback_to_the_version_a_dangling_pointer_names_repairs_it(tmp_path, learned_bundle):
    root = f"file://{tmp_path / 'store'}"
    promote(root, learned_bundle, "v1")
    pointer = tmp_path / "store" / "models" / "lmrec" / "production.json"
    body = production(root) | {"bundle_uri": f"{root}/models/lmrec/moved-away"}
    pointer.write_text(json.dumps(body))
    code, out = cli("rollback", "--store", root, "--to", "v1")
    assert code == 0 and '"rolled back"' in out
    assert production(root)["bundle_uri"] == f"{root}/models/lmrec/v1"
    # and a replay of the job whose bundle is gone from production republishes it
    shutil.rmtree(tmp_path / "store" / "models" / "lmrec" / "v1")
    decision_path(tmp_path, "lmrec-v1").unlink()
    again = promote(root, learned_bundle, "v1")
    assert (
        again.action == "promoted" and (tmp_path / "store/models/lmrec/v1/manifest.json").exists()
    )


def test_a_version_is_never_overwritten(tmp_path, learned_bundle):
    root = f"file://{tmp_path / 'store'}"
    promote(root, learned_bundle, "v1")
    promote(root, learned_bundle, "v2", scale=1.1)
    before = (tmp_path / "store/models/lmrec/v1/manifest.json").read_bytes()
    # a later job whose bundle reuses the name v1 with other figures
    decision = promote(root, learned_bundle, "v1", job="lmrec-other", scale=1.3)
    assert decision.action == "rejected"
    assert (tmp_path / "store/models/lmrec/v1/manifest.json").read_bytes() == before
    # lmrec publish says the same in one line
    other = tmp_path / "other"
    shutil.copytree(learned_bundle, other)
    m = json.loads((other / fmt.MANIFEST).read_text()) | {"model_version": "v2"}
    (other / fmt.MANIFEST).write_text(json.dumps(m))
    code, out = cli("publish", str(other), "--store", root)
    assert code == 2 and "already published with other content" in out
    # publishing the same content again is a no-op, not an error
    assert registry.publish(learned_bundle, root, "lmrec").model_version


@pytest.mark.parametrize("uri", ["s3://", "http://example.com/model.tar.gz", "s3://bucket/"])
def test_an_artifact_uri_no_retry_can_read_is_a_recorded_rejection(tmp_path, uri):
    root = f"file://{tmp_path / 'store'}"
    decision = Promoter(root, "lmrec").on_completed("lmrec-odd", uri)
    assert decision.action == "rejected" and "no artifact" in decision.reason
    assert json.loads(decision_path(tmp_path, "lmrec-odd").read_text())["action"] == "rejected"


def test_a_job_name_outside_sagemakers_rule_is_a_bad_event():
    from lmrec.lifecycle_events import BadEvent, parse_training_job_change

    from tests.test_lifecycle_functions import load_event

    event = load_event("promote_training_completed.json")
    event["detail"]["TrainingJobName"] = "lmrec-../../x"
    with pytest.raises(BadEvent, match="TrainingJobName"):
        parse_training_job_change(event)


def test_a_pointer_whose_version_is_not_a_string_is_corrupt():
    data = json.dumps({"model_version": {"v": 1}, "bundle_uri": "s3://b/m"}).encode()
    with pytest.raises(registry.CorruptPointer, match="non-empty strings"):
        registry.Pointer.parse(data, "production.json")


# --- retrain ---------------------------------------------------------------------------------


def test_retrain_names_what_it_could_not_count_and_stops_counting_at_the_threshold(tmp_path):
    from lmrec.retrain import _count_new

    from tests.test_lifecycle_robustness import retrain_settings

    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f"u{i},i{i},{i}\n" for i in range(10))
    for n in range(30):
        (data / f"part-{n:02d}.csv").write_text("user_id,item_id,timestamp\n" + rows)
    good = gzip.compress(b"user_id,item_id,timestamp\n" + rows.encode())
    (data / "part-99.csv.gz").write_bytes(good[:12] + bytes(16) + good[28:])  # bad deflate
    cfg = retrain_settings(tmp_path, min_new_interactions=25)
    objects = store.list_objects(cfg.data_uri)
    assert _count_new(cfg, objects) == (30, 0, 28)  # three objects read of 31
    cfg = retrain_settings(tmp_path, min_new_interactions=10_000)
    assert _count_new(cfg, objects) == (300, 1, 0)  # the corrupt one: uncounted, no crash


def test_a_data_prefix_without_a_slash_does_not_list_its_siblings(s3_env):
    import boto3

    boto3.client("s3").create_bucket(Bucket="sib")
    for key in ("data/interactions/a.csv", "data/interactions-archive/old.csv"):
        store.write_bytes(f"s3://sib/{key}", b"user_id,item_id\n")
    listed = store.list_objects("s3://sib/data/interactions")
    assert [o.uri for o in listed] == ["s3://sib/data/interactions/a.csv"]
    assert store.list_files("s3://sib/data/interactions") == ["s3://sib/data/interactions/a.csv"]


def test_a_data_folder_without_a_slash_is_the_channel_s_folder_only(s3_env):
    import boto3
    from lmrec.retrain import decide_training
    from lmrec.settings import RetrainSettings

    boto3.client("s3").create_bucket(Bucket="chan")
    rows = b"user_id,item_id,timestamp\n" + b"".join(b"u%d,i%d,%d\n" % (i, i, i) for i in range(5))
    store.write_bytes("s3://chan/data/interactions/a.csv", rows)
    store.write_bytes("s3://chan/data/interactions-archive/old.csv", rows)
    cfg = RetrainSettings(
        store_uri="s3://chan",
        data_uri="s3://chan/data/interactions",
        output_uri="s3://chan/training-output",
        training_image="123.dkr.ecr.us-east-1.amazonaws.com/lmrec:1",
        training_role_arn="arn:aws:iam::123456789012:role/x",
        min_new_interactions=1,
    )
    sagemaker = boto3.client("sagemaker")  # moto's, as the local stack's
    decision = decide_training(cfg, sagemaker, 0.0)
    assert decision.action == "started", decision
    sent = sagemaker.describe_training_job(TrainingJobName=decision.job_name)
    channel = sent["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert channel == "s3://chan/data/interactions/"
