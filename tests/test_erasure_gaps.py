"""Erasure without gaps (issue 25, item 2): one test per gap, each on what a user sees.

The pending erasure that waits for no new data is shown on the local stack, in
tests/test_erasure_end_to_end.py::test_a_pending_erasure_is_done_on_the_schedule_without_new_data.
"""

from __future__ import annotations

import gzip
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lmrec import erasure, store
from lmrec.local.stack import create_user_store_table
from lmrec.userstore import UserStoreUnavailable, open_user_store

from tests.conftest import call, write_csv
from tests.conftest import lmrec_cli as lmrec
from training import erasure as job
from training import histories
from training.config import DataConfig
from training.data import load_interactions

HEADER = ["user_id", "item_id", "timestamp"]


# -- sync-histories reads the erasure location as the training job does --------------------
@pytest.mark.parametrize("form", [[], ["--full"]])
def test_a_sync_by_hand_never_writes_back_an_erased_user(api, ml100k_small, tmp_path, form):
    # GIVEN user 2, personalised, who asks to be erased
    _, before = call(api, "api_post_recommendations.json", body={"user_id": "2", "k": 5})
    assert before["strategy"] == "personalized"
    status, _ = call(api, "api_delete_events.json", path="/v1/users/2")
    assert status == 200
    # WHEN an operator runs the sync by hand, with the service's settings and no --erasure
    table = os.environ["LMREC_USER_STORE"].removeprefix("dynamodb://")
    code = lmrec(
        [
            "sync-histories",
            "--data",
            str(ml100k_small[0]),
            "--user-store",
            f"dynamodb://{table}",
            "--state",
            f"file://{tmp_path / 'by-hand.npz'}",
            *form,
        ]
    )
    # THEN every other user is written, and user 2 is still unknown
    assert code == 0
    _, after = call(api, "api_post_recommendations.json", body={"user_id": "2", "k": 5})
    assert after["strategy"] == "popular" and after["history_length"] == 0
    _, other = call(api, "api_post_recommendations.json", body={"user_id": "3", "k": 5})
    assert other["strategy"] == "personalized"


# -- ids found whatever their physical type -------------------------------------------------
def test_the_deletion_job_finds_ids_of_every_physical_type(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # float with nulls (what pandas writes for an integer column with a gap), 3 row groups, zstd
    floats = pa.table(
        {
            "user_id": pa.array([7.0, None, 12.0, 7.0, 70.0, 7.0], pa.float64()),
            "item_id": pa.array(list("abcdef")),
            "timestamp": pa.array(range(6), pa.int64()),
        }
    )
    pq.write_table(floats, data / "floats.parquet", row_group_size=2, compression="zstd")
    categories = pd.DataFrame(
        {"user_id": pd.Categorical([7, 8, 7]), "item_id": ["a", "b", "c"], "timestamp": [1, 2, 3]}
    )
    categories.to_parquet(data / "categories.parquet")
    pd.DataFrame({"user_id": [7, 77], "item_id": ["a", "b"], "timestamp": [1, 2]}).to_parquet(
        data / "ints.parquet"
    )
    write_csv(data / "text.csv", HEADER, [["7", "a", 1], ["07", "b", 2], ["7.0", "c", 3]])
    (data / "zipped.csv.gz").write_bytes(
        gzip.compress(b"user_id,item_id,timestamp\n7,a,1\n8,b,2\n")
    )
    root = f"file://{tmp_path / 'erasure'}"
    erasure.record(root, "7")

    summary = job.run(root, [str(data)])

    # THEN no row of user 7 is left, in any file, and every other row is
    def users_in(name: str) -> list:
        path = data / name
        if name.endswith(".parquet"):
            return pd.read_parquet(path)["user_id"].tolist()
        return pd.read_csv(path, dtype=str)["user_id"].tolist()

    assert users_in("categories.parquet") == [8]
    assert users_in("ints.parquet") == [77]
    assert users_in("text.csv") == ["07", "7.0"]  # other ids, as training reads a CSV
    assert users_in("zipped.csv.gz") == ["8"]
    assert summary["rows_removed"] == 3 + 2 + 1 + 1 + 1 and summary["completed"] == 1
    assert erasure.pending(root) == []
    # the float file kept its row groups ([7, None] [12, 7] [70, 7]: one row left in each),
    # its codec and its column types
    kept = pq.ParquetFile(data / "floats.parquet")
    assert kept.metadata.num_row_groups == 3
    assert kept.metadata.row_group(0).column(0).compression == "ZSTD"
    assert kept.schema_arrow == floats.schema
    assert kept.read().column("user_id").to_pylist() == [None, 12.0, 70.0]


def test_a_request_stays_pending_while_rows_are_found_again(tmp_path, monkeypatch):
    # an upload lands between the rewrite and the re-read: the request is not marked done
    data = write_csv(tmp_path / "d" / "a.csv", HEADER, [["gone", "a", 1], ["x", "b", 2]])
    root = f"file://{tmp_path / 'erasure'}"
    erasure.record(root, "gone")
    rewrite = job.purge_object

    def rewrite_then_upload(uri, users, user_col="user_id"):
        removed = rewrite(uri, users, user_col)
        write_csv(tmp_path / "d" / "late.csv", HEADER, [["gone", "c", 3]])
        return removed

    monkeypatch.setattr(job, "purge_object", rewrite_then_upload)
    with pytest.raises(job.RowsFoundAgain, match="stay pending"):
        job.run(root, [str(data.parent)])
    assert [r.user_id for r in erasure.pending(root)] == ["gone"]
    monkeypatch.setattr(job, "purge_object", rewrite)
    assert job.run(root, [str(data.parent)])["completed"] == 1  # the next run finishes it


# -- the user's item counts (issue 28) go with the user, by the API and by the deletion job ---
def partition_size(user_id: str) -> int:
    return boto3.client("dynamodb").query(
        TableName=os.environ["LMREC_USER_STORE"].removeprefix("dynamodb://"),
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": user_id}},
        Select="COUNT",
    )["Count"]


def test_item_counts_are_erased_by_the_api_and_by_the_deletion_job(api):
    users = open_user_store(os.environ["LMREC_USER_STORE"])
    events = [{"user_id": "3", "item_id": i} for i in ("50", "181", "50")]
    events[2]["timestamp"] = time.time() - 60  # a second event of item 50
    assert call(api, "api_post_events.json", body={"events": events})[0] == 202
    assert {i: c.count for i, c in users.item_counts("3").items()} == {"50": 2, "181": 1}
    # WHEN the user is erased through the API THEN nothing of theirs is left in the table
    status, body = call(api, "api_delete_events.json", path="/v1/users/3")
    assert status == 200 and body["complete"] and body["deleted"] == 1 + 3 + 2
    assert users.item_counts("3") == {} and partition_size("3") == 0
    # WHEN events arrive after the DELETE (a client that had not heard), THEN the deletion
    # job's user-store step takes them and their counts too
    assert call(api, "api_post_events.json", body={"events": events[:1]})[0] == 202
    assert users.item_counts("3") != {}
    summary = job.run(f"{os.environ['LMREC_STORE_URI']}/erasure", [], user_store=users)
    assert summary["completed"] == 1
    assert users.item_counts("3") == {} and partition_size("3") == 0


# -- DELETE within a deadline, against a slow table ------------------------------------------
@pytest.fixture
def short_deadline(monkeypatch):
    # 4 s: with the API's AWS budget of 3 s, no user-store call starts after 1 s
    monkeypatch.setenv("LMREC_ERASURE_DEADLINE_SECONDS", "4")


@pytest.mark.slow  # about 9 s: 5,000 events written into, and deleted from, moto's table
def test_delete_of_a_user_with_5000_events_replies_within_the_deadline(short_deadline, api):
    from lmrec import events
    from lmrec.event_writes import COUNT_PREFIX, digest
    from lmrec.events import Event
    from lmrec.userstore import event_key

    users = open_user_store(os.environ["LMREC_USER_STORE"])
    # 5,000 events of 50 items: 5,050 records (each item's count is one more), written in
    # the user store's layout by BatchWriteItem (moto's TransactWriteItems copies the whole
    # table per call: a seed of this size through put_events would take minutes on moto)
    many = [Event("2", f"i{n % 50}", 1_700_000_000 + n, "view") for n in range(5000)]
    expires = {"N": str(int(time.time()) + 86400)}
    records = [
        {"sk": {"S": event_key(e)}, "item_id": {"S": e.item_id}, "event_type": {"S": "view"}}
        | {"ts": {"N": repr(float(e.timestamp))}, "expires_at": expires}
        for e in many
    ]
    records += [
        {"sk": {"S": COUNT_PREFIX + digest(f"i{k}")}, "item": {"S": f"i{k}"}, "n": {"N": "100"}}
        | {"last_seen": {"N": str(1_700_004_950 + k)}, "expires_at": expires}
        for k in range(50)
    ]
    table, dynamodb = (
        os.environ["LMREC_USER_STORE"].removeprefix("dynamodb://"),
        boto3.client("dynamodb"),
    )

    def put(batch: list[dict]) -> None:
        puts = [{"PutRequest": {"Item": {"user_id": {"S": "2"}, **r}}} for r in batch]
        assert not dynamodb.batch_write_item(RequestItems={table: puts}).get("UnprocessedItems")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, [records[i : i + 25] for i in range(0, len(records), 25)]))
    assert len(users.item_counts("2")) == 50
    # GIVEN a table that takes 0.2 s to answer each BatchWriteItem
    client = events._client()

    def slow(**_):
        time.sleep(0.2)

    client.meta.events.register("before-send.dynamodb.BatchWriteItem", slow)
    try:
        began = time.monotonic()
        status, body = call(api, "api_delete_events.json", path="/v1/users/2")
        took = time.monotonic() - began
    finally:
        client.meta.events.unregister("before-send.dynamodb.BatchWriteItem", slow)
    # THEN the reply comes within the deadline, the request is recorded, and the user is
    # already unknown although most of their events are still stored
    assert status == 200 and took < 4.0, (took, body)
    assert body["erasure_recorded"] and not body["complete"]
    [request] = erasure.pending(f"{os.environ['LMREC_STORE_URI']}/erasure")
    assert request.user_id == "2"
    _, after = call(api, "api_post_recommendations.json", body={"user_id": "2", "k": 5})
    assert after["strategy"] == "popular"
    left = boto3.client("dynamodb").query(
        TableName=os.environ["LMREC_USER_STORE"].removeprefix("dynamodb://"),
        KeyConditionExpression="user_id = :u",
        ExpressionAttributeValues={":u": {"S": "2"}},
        Select="COUNT",
    )["Count"]
    assert left > 1000
    # WHEN the deletion job runs, THEN nothing of the user is left
    summary = job.run(f"{os.environ['LMREC_STORE_URI']}/erasure", [], user_store=users)
    assert summary["completed"] == 1
    assert users.delete_user_until("2") == (0, True)


# -- a run reads the pending requests, not the history ---------------------------------------
@pytest.mark.slow  # about 35 s: 2,000 requests recorded and completed on moto's S3
def test_2000_done_records_and_one_pending_cost_reads_for_one(s3_env, tmp_path, monkeypatch):
    from lmrec import s3get

    bucket = f"erasure-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/erasure"

    def finished(n: int) -> None:
        user = f"old-{n}"
        erasure.record(root, user, now=1.0)
        assert erasure.complete(erasure.Request(erasure.request_uri(root, user), user, 1.0), {})

    # 4 threads: 16 made moto miss the clients' 1 s read budget on a busy 2-core machine
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(finished, range(2000)))
    erasure.record(root, "waiting")
    data = f"s3://{bucket}/data/part-0.csv"
    store.write_bytes(data, b"user_id,item_id,timestamp\nwaiting,a,1\nx,b,2\n")

    reads: list[str] = []  # every GET and LIST of the erasure prefix, botocore or signed GET
    s3 = store.s3_client()

    def count(params, model, **_):
        key = params.get("Key") or params.get("Prefix") or ""
        if model.name in ("GetObject", "ListObjectsV2", "ListObjects") and "erasure" in key:
            reads.append(f"{model.name} {key}")

    s3.meta.events.register("provide-client-params.s3", count)
    fast_open = s3get.Reader.open

    def counted_open(self, bucket_name, key):
        if "erasure" in key:
            reads.append(f"GET {key}")
        return fast_open(self, bucket_name, key)

    monkeypatch.setattr(s3get.Reader, "open", counted_open)
    try:
        summary = job.run(root, [data])
    finally:
        s3.meta.events.unregister("provide-client-params.s3", count)
    assert summary["completed"] == 1 and summary["requests"] == 1
    assert len(reads) <= 6, reads  # listings of pending/ (and the older requests/), one record


# -- ids the user store cannot key; a sync that stops resumes --------------------------------
def test_the_sync_skips_ids_the_store_cannot_key_and_resumes(s3_env, tmp_path):
    table = f"users-{uuid.uuid4().hex[:8]}"
    create_user_store_table(table)
    users = open_user_store(f"dynamodb://{table}")
    huge = "u" * 3000  # over DynamoDB's 2048-byte partition key
    rows = [[f"user-{u}", f"it-{t}", t] for u in range(40) for t in range(3)]
    rows += [[huge, "it-1", 1], ["ü" * 700, "it-2", 2]]  # 1400 bytes of UTF-8: fits
    path = write_csv(tmp_path / "d.csv", HEADER, rows)
    data = load_interactions(str(path), DataConfig(min_interactions=0, min_users=0))
    state = f"file://{tmp_path / 'state.npz'}"

    # GIVEN a table that fails the third BatchWriteItem of the sync
    client = users._client()
    calls = {"n": 0}

    def fail_third(**_):
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("the table went away")

    client.meta.events.register("before-send.dynamodb.BatchWriteItem", fail_third)
    try:
        with pytest.raises(UserStoreUnavailable):
            histories.sync(data, users, state, chunk=10, save_every=0)
    finally:
        client.meta.events.unregister("before-send.dynamodb.BatchWriteItem", fail_third)
    # WHEN it runs again, THEN it writes only what the stopped run had not, skips the id
    # the table cannot key, and reports it
    again = histories.sync(data, users, state, chunk=10, save_every=0)
    assert again["skipped_unstorable"] == 1
    assert again["written"] == 41 - 20  # two chunks of 10 were stored before the failure
    assert users.recent("user-39", 0).history == ["it-0", "it-1", "it-2"]
    assert users.recent("ü" * 700, 0).history == ["it-2"]
    assert histories.sync(data, users, state)["written"] == 0


# -- no data cell in a stored failure text ---------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "where"),
    [
        ("user_id,item_id,timestamp\nu1,i1,1\nsecret-cell-9f,i2,secret-cell-9f\n", "line 3"),
        ("secret-cell-9f,i1,1\nu2,i2,2\n", "none of the expected names"),  # no header
    ],
)
def test_stored_failure_texts_name_column_and_line_never_a_value(tmp_path, lines, where):
    from lmrec.promote import Promoter

    bad = tmp_path / "bad.csv"
    bad.write_text(lines)
    out = tmp_path / "model"
    failure_file = tmp_path / "model-failure"  # what the container writes as output/failure
    args = ["train", "--data", str(bad), "--output", str(out), "--failure-file", str(failure_file)]
    assert lmrec(args) == 2
    failure = failure_file.read_text()
    assert where in failure and "secret-cell-9f" not in failure
    # the promote function stores SageMaker's FailureReason (this text) under decisions/
    promoter = Promoter(f"file://{tmp_path / 'store'}", "lmrec")
    promoter.on_failed("lmrec-x", f"AlgorithmError: {failure}")
    record = (tmp_path / "store" / "models" / "lmrec" / "decisions" / "lmrec-x.json").read_text()
    assert "secret-cell-9f" not in record and where in record


def test_decision_records_expire():
    from tests.sam_template import cfn_template

    rules = cfn_template()["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]
    [rule] = [r for r in rules["Rules"] if r["Id"] == "Decisions"]
    assert rule["Status"] == "Enabled" and rule["ExpirationInDays"] == {"Ref": "DecisionDays"}
    assert rule["Prefix"] == {"Fn::Sub": "models/${ModelName}/decisions/"}
    np.testing.assert_equal(cfn_template()["Parameters"]["DecisionDays"]["Default"], 90)
