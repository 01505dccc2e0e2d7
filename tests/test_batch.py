"""Batch recommendations: every user scored, sharded, identical to the API."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from lmrec import registry
from lmrec.settings import get_settings

from tests.conftest import (
    LambdaContext,
    fill_user_store,
    import_function,
    load_event,
    run_training,
    write_csv,
)


def test_sharded_batch_covers_every_user_and_matches_the_api(
    tmp_path, trained_bundle, ml100k_small, monkeypatch
):
    out = tmp_path / "batch"
    for shard in (0, 1):
        proc = run_training(
            [
                "batch",
                "--bundle",
                str(trained_bundle),
                "--output",
                str(out),
                "--data",
                str(ml100k_small[0]),
                "--k",
                "5",
                "--shard-index",
                str(shard),
                "--shard-count",
                "2",
            ]
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["rows"] > 0
    table = pq.read_table(out).to_pandas()
    users = sorted({line.split(",")[0] for line in ml100k_small[0].read_text().splitlines()[1:]})
    assert set(table["user_id"]) == set(users) and len(table) == 5 * len(users)
    assert table["user_id"].map(type).eq(str).all()

    root = f"file://{tmp_path / 'store'}"
    registry.set_production(root, "lmrec", registry.publish(trained_bundle, root, "lmrec"))
    monkeypatch.setenv("LMREC_STORE_URI", root)
    monkeypatch.setenv("LMREC_USER_STORE", "")
    user_store = f"sqlite://{tmp_path / 'users.db'}"
    fill_user_store(user_store, ml100k_small[0], tmp_path)
    monkeypatch.setenv("LMREC_USER_STORE", user_store)
    get_settings.cache_clear()
    api = import_function("api", "fn_api_batch")
    for user in users[:5]:
        event = load_event("api_post_recommendations.json")
        event["body"] = json.dumps({"user_id": user, "k": 5})
        reply = json.loads(api.handler(event, LambdaContext())["body"])
        expected = [i["item_id"] for i in reply["items"]]
        got = table[table.user_id == user].sort_values("rank")["item_id"].tolist()
        assert got == expected
    get_settings.cache_clear()


def test_user_list_and_bad_input(tmp_path, trained_bundle):
    users = write_csv(tmp_path / "users.csv", ["user_id"], [["1"], ["2"], ["nobody"]])
    proc = run_training(
        [
            "batch",
            "--bundle",
            str(trained_bundle),
            "--output",
            str(tmp_path / "o"),
            "--users",
            str(users),
            "--k",
            "3",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pq.read_table(tmp_path / "o").to_pandas()
    assert len(table) == 9
    assert set(table[table.user_id == "nobody"]["strategy"]) == {"popular"}
    missing = run_training(
        ["batch", "--bundle", str(tmp_path / "nope"), "--output", str(tmp_path / "x")]
    )
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: ")
    assert "Traceback" not in missing.stderr
    no_users = run_training(
        ["batch", "--bundle", str(trained_bundle), "--output", str(tmp_path / "x")]
    )
    assert no_users.returncode == 2 and "--users all needs --data" in no_users.stderr


def test_rollback_cli_without_a_production_model(tmp_path):
    proc = run_training(["rollback", "--store", f"file://{tmp_path}"])
    assert proc.returncode == 2 and "no production pointer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_user_files_are_read_as_training_reads_ids(tmp_path, trained_bundle):
    import pandas as pd

    # GIVEN a Parquet user list whose ids became floats on the way (1.0 is training's "1")
    floats = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": [1.0, 2.0]}).to_parquet(floats)
    out = tmp_path / "o"
    args = ["batch", "--bundle", str(trained_bundle), "--output", str(out), "--k", "2"]
    proc = run_training([*args, "--users", str(floats)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pq.read_table(out).to_pandas()
    assert sorted(set(table.user_id)) == ["1", "2"]  # not "1.0": the users training knew
    # a blank id or a null is refused in one line, as training refuses it
    for name, ids in (("blank.parquet", ["1", "  "]), ("null.parquet", [1.0, None])):
        path = tmp_path / name
        pd.DataFrame({"user_id": ids}).to_parquet(path)
        bad = run_training([*args, "--users", str(path)])
        assert bad.returncode == 2 and "null or blank id" in bad.stderr, bad.stderr[-500:]
        assert "Traceback" not in bad.stderr
