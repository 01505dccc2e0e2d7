"""Erasure: DELETE /v1/users/{id}, its record, and the deletion job over the data."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from lmrec import erasure

from tests.conftest import call, run_training, write_csv
from training import erasure as job


def _rows(users, per_user=3):
    return [[u, f"it{j}", 1000 + j] for u in users for j in range(per_user)]


def test_purge_rewrites_only_objects_with_the_users_rows(tmp_path):
    data = tmp_path / "data"
    plain = write_csv(data / "a.csv", ["user_id", "item_id", "timestamp"], _rows(["x1", "gone"]))
    other = write_csv(data / "b.csv", ["user_id", "item_id", "timestamp"], _rows(["x2"]))
    before_other = other.read_bytes()
    gz = data / "c.csv.gz"
    gz.write_bytes(gzip.compress(b"user_id,item_id,timestamp\ngone,it9,5\nx3,it9,6\n"))
    pd.DataFrame(
        {"user_id": ["gone", "x4"], "item_id": ["a", "b"], "timestamp": [1, 2]}
    ).to_parquet(data / "d.parquet")
    got = job.purge(str(data), {"gone"})
    assert got == {"objects_scanned": 4, "objects_rewritten": 3, "rows_removed": 5}
    assert "gone" not in plain.read_text() and plain.read_text().count("x1") == 3
    assert other.read_bytes() == before_other  # untouched
    assert gzip.decompress(gz.read_bytes()).decode() == "user_id,item_id,timestamp\nx3,it9,6\n"
    assert pd.read_parquet(data / "d.parquet")["user_id"].tolist() == ["x4"]
    assert job.purge(str(data), {"gone"})["objects_rewritten"] == 0  # idempotent


def test_rows_are_matched_as_training_reads_ids(tmp_path):
    # the training loader decides whose row a line is; the job must agree with it exactly
    from training.config import DataConfig
    from training.data import load_interactions

    f = tmp_path / "d.csv"
    f.write_text("user_id,item_id,timestamp\n007,a,1\n7,b,2\n 7,c,3\nother,d,4\n")
    job.purge(str(f), {"7"})
    kept = f.read_text()
    assert "007,a,1" in kept and "other,d,4" in kept and "7,b,2" not in kept.replace("007", "")
    data = load_interactions(str(f), DataConfig(min_interactions=0, min_users=0))
    assert "7" not in data.user_ids.tolist()


def test_records_hold_the_id_only_while_pending(tmp_path):
    root = f"file://{tmp_path / 'erasure'}"
    uri = erasure.record(root, "user/ü 1")
    assert uri.endswith(f"{erasure.user_hash('user/ü 1')}.json")
    [req] = erasure.pending(root)
    assert req.user_id == "user/ü 1"
    assert erasure.complete(req, {"rows_removed": 3})
    assert (
        "/pending/" in uri and not (tmp_path / "erasure" / "pending" / uri.rsplit("/")[-1]).exists()
    )
    body = json.loads((tmp_path / "erasure" / "done" / uri.rsplit("/", 1)[1]).read_text())
    assert body["status"] == "done" and "user_id" not in body and "ü" not in json.dumps(body)
    assert erasure.pending(root) == []
    # asked again while a job ran: the newer request stays pending
    erasure.record(root, "u2", now=1.0)
    [old] = erasure.pending(root)
    erasure.record(root, "u2", now=2.0)
    assert not erasure.complete(old, {})
    assert [r.user_id for r in erasure.pending(root)] == ["u2"]


@pytest.mark.parametrize("state", ["pending", "requests"])  # requests/: the older layout
def test_a_corrupt_pending_record_stops_the_job(tmp_path, state):
    requests = tmp_path / "erasure" / state
    requests.mkdir(parents=True)
    (requests / "x.json").write_text("{not json")
    from lmrec.store import StoreError

    with pytest.raises(StoreError, match="not a valid erasure record"):
        erasure.pending(f"file://{tmp_path / 'erasure'}")


def test_records_of_the_older_layout_are_carried_out_and_moved(tmp_path):
    # recorded before the split by state: requests/<hash>.json, pending and done alike
    data = write_csv(tmp_path / "d.csv", ["user_id", "item_id", "timestamp"], _rows(["a", "old"]))
    legacy = tmp_path / "erasure" / "requests"
    legacy.mkdir(parents=True)
    pending = {"status": "pending", "user_id": "old", "requested_at": 1.0}
    (legacy / f"{erasure.user_hash('old')}.json").write_text(json.dumps(pending))
    (legacy / "f.json").write_text(json.dumps({"status": "done", "user_sha256": "f"}))
    root = f"file://{tmp_path / 'erasure'}"
    assert erasure.pending_count(root) == 2
    assert job.run(root, [str(data)])["completed"] == 1
    assert "old" not in data.read_text() and not any(legacy.iterdir())
    assert sorted(p.name for p in (tmp_path / "erasure" / "done").iterdir()) == sorted(
        [f"{erasure.user_hash('old')}.json", "f.json"]
    )
    assert erasure.pending_count(root) == 0


def test_erase_cli(tmp_path):
    data = write_csv(
        tmp_path / "data" / "a.csv", ["user_id", "item_id", "timestamp"], _rows(["a", "b"])
    )
    root = f"file://{tmp_path / 'erasure'}"
    erasure.record(root, "b")
    proc = run_training(["erase", "--requests", root, "--data", str(data.parent)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["rows_removed"] == 3 and summary["completed"] == 1
    assert "b," not in data.read_text()
    # bad input: one line, exit 2, no traceback
    (tmp_path / "erasure" / "pending" / "bad.json").write_text("[")
    bad = run_training(["erase", "--requests", root, "--data", str(data.parent)])
    assert (
        bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    )
    no_store = run_training(
        ["sync-histories", "--data", str(data.parent), "--user-store", "redis://x"]
    )
    assert no_store.returncode == 2 and "dynamodb://" in no_store.stderr
    assert "Traceback" not in no_store.stderr
    no_data = run_training(
        [
            "sync-histories",
            "--data",
            str(tmp_path / "none"),
            "--user-store",
            f"sqlite://{tmp_path / 'u.db'}",
        ]
    )
    assert no_data.returncode == 2 and "Traceback" not in no_data.stderr


def test_a_mistyped_location_leaves_the_requests_pending(tmp_path):
    data = write_csv(
        tmp_path / "data" / "a.csv", ["user_id", "item_id", "timestamp"], _rows(["a", "b"])
    )
    root = f"file://{tmp_path / 'erasure'}"
    erasure.record(root, "b")
    # WHEN the deletion job is pointed at a data path that does not exist
    typo = run_training(["erase", "--requests", root, "--data", str(tmp_path / "dta")])
    # THEN it refuses in one line, and b's request is still pending, b's rows still there
    assert typo.returncode == 2 and "no such file or directory" in typo.stderr
    assert "Traceback" not in typo.stderr
    assert erasure.pending_count(root) == 1 and "b," in data.read_text()
    # a fingerprints state in a mistyped folder: refused too, before any row is rewritten
    state = ["--state", str(tmp_path / "sttae" / "fingerprints.npz")]
    typo = run_training(["erase", "--requests", root, "--data", str(data), *state])
    assert typo.returncode == 2 and "--state" in typo.stderr and "stay pending" in typo.stderr
    assert erasure.pending_count(root) == 1 and "b," in data.read_text()
    # an erasure root in a folder that does not exist is refused; one not made yet beside
    # others is a root before its first request (lmrec serve makes it at the first DELETE)
    wrong = run_training(["erase", "--requests", str(tmp_path / "x" / "e"), "--data", str(data)])
    assert wrong.returncode == 2 and "--requests" in wrong.stderr
    early = run_training(["erase", "--requests", str(tmp_path / "later"), "--data", str(data)])
    assert early.returncode == 0 and json.loads(early.stdout)["requests"] == 0
    # and a sync by hand with a mistyped --erasure would write b's history back: refused
    sync = run_training(
        [
            "sync-histories",
            "--data",
            str(data.parent),
            "--user-store",
            f"sqlite://{tmp_path / 'u.db'}",
            "--state",
            str(tmp_path / "state.npz"),
            "--erasure",
            str(tmp_path / "erasur"),
        ]
    )
    assert sync.returncode == 2 and "--erasure" in sync.stderr  # before any history is read
    assert not (tmp_path / "state.npz").exists()


@pytest.mark.parametrize(
    ("raw", "kept"),
    [  # the file's own header line, BOM and line endings come back as they were
        (
            '\ufeffuser_id,item_id,timestamp,note,note\r\na,i1,1,x,y\r\nb,i2,2,"q,r",z\r\n',
            '\ufeffuser_id,item_id,timestamp,note,note\r\nb,i2,2,"q,r",z\r\n',
        ),
        # CR-only line endings, a blank first line: pandas writes the header
        ("user_id,item_id,timestamp\ra,i1,1\rb,i2,2\r", "user_id,item_id,timestamp\nb,i2,2\n"),
        ("\nuser_id,item_id,timestamp\na,i1,1\nb,i2,2\n", "user_id,item_id,timestamp\nb,i2,2\n"),
    ],
)
def test_a_rewritten_csv_keeps_its_header_bom_and_line_endings(tmp_path, raw, kept):
    path = tmp_path / "d.csv"
    path.write_bytes(raw.encode())
    assert job.purge(str(path), {"a"})["rows_removed"] == 1
    assert path.read_bytes().decode() == kept
    assert job.purge(str(path), {"a"})["rows_removed"] == 0  # nothing left, nothing added


def test_erasure_reaches_files_below_hidden_and_underscore_folders(tmp_path):
    # training skips them as unfinished; an erased user's rows must go from them too
    for rel in ("a.csv", "_archive/2023.csv", ".backup/b.csv"):
        write_csv(tmp_path / "data" / rel, ["user_id", "item_id", "timestamp"], _rows(["a", "b"]))
    # and a side file that is not interactions (a schema, a half-written part) is passed over
    write_csv(tmp_path / "data" / "_schema" / "columns.csv", ["name", "type"], [["a", "str"]])
    (tmp_path / "data" / "_temporary").mkdir()
    (tmp_path / "data" / "_temporary" / "part.parquet").write_bytes(b"PAR1 half")
    assert job.purge(str(tmp_path / "data"), {"a"})["rows_removed"] == 9
    for rel in ("a.csv", "_archive/2023.csv", ".backup/b.csv"):
        assert "a," not in (tmp_path / "data" / rel).read_text()
    assert not job.rows_left(str(tmp_path / "data"), {"a"})


def test_a_broken_state_file_does_not_block_the_deletion_job(tmp_path):
    from training.histories import drop_users

    state = tmp_path / "state.npz"
    state.write_bytes(b"PK\x03\x04 not a zip")
    assert drop_users(str(state), ["a"]) == 0 and state.read_bytes().startswith(b"PK")


def test_a_state_file_that_is_not_ours_is_not_overwritten(tmp_path):
    data = write_csv(
        tmp_path / "data" / "a.csv", ["user_id", "item_id", "timestamp"], _rows(["a", "b"])
    )
    state = tmp_path / "notes.txt"
    state.write_text("mine")
    proc = run_training(
        [
            "sync-histories",
            "--data",
            str(data),
            "--user-store",
            f"sqlite://{tmp_path / 'u.db'}",
            "--state",
            str(state),
        ]
    )
    assert proc.returncode == 2 and "not a fingerprint state" in proc.stderr
    assert state.read_text() == "mine"


def test_delete_erases_history_and_events_and_records_the_request(api, model_store, tmp_path):
    status, before = call(api, "api_post_recommendations.json", body={"user_id": "2", "k": 5})
    assert status == 200 and before["strategy"] == "personalized"
    status, _ = call(
        api, "api_post_events.json", body={"events": [{"user_id": "2", "item_id": "50"}]}
    )
    assert status == 202
    status, body = call(api, "api_delete_events.json", path="/v1/users/2")
    assert status == 200
    # history, the event, and the user's count of the item
    assert body == {"user_id": "2", "deleted": 3, "erasure_recorded": True, "complete": True}
    assert api.app.state.users.item_counts("2") == {}
    status, after = call(api, "api_post_recommendations.json", body={"user_id": "2", "k": 5})
    assert after["strategy"] == "popular" and after["history_length"] == 0
    [req] = erasure.pending(f"{model_store}/erasure")
    assert req.user_id == "2"
    # erasing an unknown user is fine (and recorded: their data may still be in S3)
    status, body = call(api, "api_delete_events.json", path="/v1/users/nobody-here")
    assert status == 200 and body["deleted"] == 0 and body["erasure_recorded"]
    # a blank id is refused
    assert call(api, "api_delete_events.json", path="/v1/users/%20")[0] in (404, 422)


def test_delete_when_the_record_cannot_be_written(api, monkeypatch):
    from lmrec import store

    def broken(uri, data):
        raise store.StoreError("s3://secret-bucket/erasure: access denied")

    monkeypatch.setattr(store, "write_bytes", broken)
    status, body = call(api, "api_delete_events.json", path="/v1/users/3")
    assert status == 503 and "not recorded" in body["detail"]
    assert "secret-bucket" not in body["detail"]
    # nothing was deleted either: a deletion without its record would be undone by the
    # next history sync, while the reply says to retry
    _, after = call(api, "api_post_recommendations.json", body={"user_id": "3", "k": 5})
    assert after["strategy"] == "personalized"


def test_the_training_job_gets_the_user_data_settings(monkeypatch):
    from lmrec.retrain import training_job_request
    from lmrec.settings import RetrainSettings

    cfg = RetrainSettings(
        store_uri="s3://b",
        data_uri="s3://b/data/interactions/",
        output_uri="s3://b/training-output",
        training_image="img",
        training_role_arn="arn:aws:iam::1:role/r",
        user_store="dynamodb://t",
        erasure_uri="s3://b/erasure",
        batch_uri="s3://b/batch/",
    )
    env = training_job_request(cfg, "lmrec-x")["Environment"]
    assert env == {
        "LMREC_STORE_URI": "s3://b",  # production, scored on the job's test users
        "LMREC_MODEL_NAME": "lmrec",
        "LMREC_DATA_URI": "s3://b/data/interactions/",
        "LMREC_USER_STORE": "dynamodb://t",
        "LMREC_ERASURE_URI": "s3://b/erasure",
        "LMREC_BATCH_URI": "s3://b/batch/",
        "LMREC_HISTORY_LENGTH": "1000",
    }


def test_training_stops_when_the_deletion_job_cannot_finish(tmp_path):
    data = write_csv(tmp_path / "d.csv", ["user_id", "item_id", "timestamp"], _rows(["a"]))
    requests = tmp_path / "erasure" / "requests"
    requests.mkdir(parents=True)
    (requests / "x.json").write_text("{broken")
    proc = run_training(
        ["train", "--data", str(data), "--output", str(tmp_path / "model")],
        env={"LMREC_ERASURE_URI": f"file://{tmp_path / 'erasure'}"},
    )
    assert proc.returncode != 0 and "not a valid erasure record" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "model" / "manifest.json").exists()


def test_the_deletion_job_erases_batch_outputs_too(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # training data keyed by another column, and a batch output as training/batch.py writes it
    data = write_csv(tmp_path / "d.csv", ["customer", "item_id", "timestamp"], _rows(["x", "gone"]))
    out = tmp_path / "batch" / "part-00000-of-00001.parquet"
    out.parent.mkdir()
    schema = {
        "user_id": pa.string(),
        "rank": pa.int16(),
        "item_id": pa.string(),
        "score": pa.float32(),
        "strategy": pa.string(),
    }
    rows = {
        "user_id": ["x", "gone", "gone", "y"],
        "rank": [1, 1, 2, 1],
        "item_id": ["a", "b", "c", "d"],
        "score": [0.5, 0.4, 0.3, 0.2],
        "strategy": ["personalized"] * 4,
    }
    pq.write_table(pa.table({k: pa.array(rows[k], t) for k, t in schema.items()}), out)
    root = f"file://{tmp_path / 'erasure'}"
    erasure.record(root, "gone")
    summary = job.run(root, [str(data)], "customer", batch_uris=[str(tmp_path / "batch")])
    assert summary["rows_removed"] == 3 + 2 and summary["completed"] == 1
    kept = pq.read_table(out)
    assert kept.column("user_id").to_pylist() == ["x", "y"]
    assert {f.name: f.type for f in kept.schema} == schema  # still readable as a batch output
    assert "gone" not in data.read_text()
    # a batch location with nothing in it yet is no failure
    root2 = f"file://{tmp_path / 'erasure2'}"
    erasure.record(root2, "x")
    assert (
        job.run(root2, [str(data)], "customer", batch_uris=[str(tmp_path / "none")])["completed"]
        == 1
    )


def test_a_shell_exporting_local_rank_still_runs_the_deletion_job(tmp_path):
    from training import userdata

    data = write_csv(tmp_path / "d.csv", ["user_id", "item_id", "timestamp"], _rows(["a", "b"]))
    root = f"file://{tmp_path / 'erasure'}"
    erasure.record(root, "b")
    env = {"LMREC_ERASURE_URI": root, "LOCAL_RANK": "0"}  # not a torchrun worker: no run id
    summary = userdata.before_training(str(data), "user_id", env)
    assert summary is not None and summary["completed"] == 1 and "b," not in data.read_text()
    # a worker torchrun started leaves the step to its launcher
    erasure.record(root, "a")
    worker = {**env, "TORCHELASTIC_RUN_ID": "job"}
    assert userdata.before_training(str(data), "user_id", worker) is None
    assert erasure.pending_count(root) == 1
