"""The training container's contract, end to end, in a temporary SAGEMAKER_BASE_DIR."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from lmrec.bundle import metric_label
from lmrec.items import read as read_items
from safetensors.numpy import load_file

from tests.conftest import REPO, TINY_HP, run_training, write_csv
from training.cf import ALS_GRID


def lay_out(base, train_file, items_file=None, hp=None, resource=None):
    """The directory tree SageMaker builds before it runs `train`."""
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({**TINY_HP, **(hp or {})}))
    if resource is not None:
        (config / "resourceconfig.json").write_text(json.dumps(resource))
    for channel, src in (("train", train_file), ("items", items_file)):
        if src is not None:
            (base / "input" / "data" / channel).mkdir(parents=True)
            shutil.copy(src, base / "input" / "data" / channel / src.name)
    return base


def test_train_writes_every_output(tmp_path, ml100k_small):
    # GIVEN the SageMaker layout with a train and an items channel
    inter, items = ml100k_small
    base = lay_out(
        tmp_path / "ml", inter, items, resource={"current_host": "algo-1", "hosts": ["algo-1"]}
    )
    # WHEN the container entry runs
    proc = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(base)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    # THEN every output is in <base>/model
    model = base / "model"
    for name in (
        "teacher.safetensors",
        "teacher_config.json",
        "student.safetensors",
        "student_config.json",
        "items.safetensors",
        "popularity.npy",
        "manifest.json",
        "metrics.json",
        "history.json",
        "report.md",
        "training_curve.png",
        "models.png",
    ):
        assert (model / name).stat().st_size > 0, name
    assert not (base / "output" / "failure").exists()
    # one parseable line per epoch for SageMaker metric definitions
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("epoch=")]
    assert [ln.split()[0] for ln in lines] == ["epoch=1", "epoch=2"]
    assert "train_loss=" in lines[0] and "valid_ndcg@10=" in lines[0]
    # students log under their own names, so teacher metric regexes do not match them
    assert sum(ln.startswith("student_epoch=") for ln in proc.stdout.splitlines()) == 2
    assert sum(ln.startswith("student_plain_epoch=") for ln in proc.stdout.splitlines()) == 2

    doc = json.loads((model / "metrics.json").read_text())
    boosted = {name for name in doc["metrics"] if name.endswith("+transitions")}
    assert set(doc["metrics"]) - boosted == {
        "teacher",
        "student",
        "student_plain",
        "popularity",
        "recent_popularity",
        "cooccurrence",
        "als",
        "ease",
        "content_tfidf",  # the data has a catalog: the content-only baseline
    }
    # the tuned baselines record their choice on valid and their cost
    costs = doc["summary"]["baselines"]
    assert costs["als"]["params"] in [dict(p) for p in ALS_GRID]
    # seconds are rounded to 0.01: a tiny co-occurrence fit may round to 0
    assert costs["ease"]["tune_seconds"] > 0 and costs["cooccurrence"]["seconds"] >= 0
    # the teacher and the served model, each with its transition weight when it is not 0
    weight = doc["summary"]["transitions"]["weight"]
    # the student learnt from the teacher as it is used: with its boost at the teacher's weight
    assert doc["summary"]["transitions"]["distilled_at_weight"] == weight["teacher"]
    # the teacher and the served model, each with its transition weight when it is not 0
    assert boosted == {f"{n}+transitions" for n in weight if weight[n]} & {
        "teacher+transitions",
        metric_label(doc["summary"]["served"]),
    }
    macs = {n: m["macs_per_request"] for n, m in doc["summary"]["models"].items()}
    assert macs["student"] < macs["teacher"] and macs["student"] == macs["student_plain"]
    for name in doc["metrics"]:
        # a boosted model's valid figure comes from its weight grid: NDCG@10 alone
        if name in boosted:
            valid = doc["metrics"][name]["valid"]["full"]
            assert 0.0 <= valid["ndcg@10"] <= 1.0 and valid["users"] > 0
        for split in ("test",) if name in boosted else ("valid", "test"):
            for protocol, keys in (
                ("full", {"hr@10", "ndcg@10", "mrr", "coverage@10"}),
                ("sampled100", {"hr@10", "ndcg@10", "mrr"}),
            ):
                got = doc["metrics"][name][split][protocol]
                assert keys <= set(got) and all(0.0 <= got[k] <= 1.0 for k in keys)
    assert doc["data_fingerprint"].startswith("sha256:")
    assert doc["seeds"]["train"] == 42 and "leave-one-out" in doc["protocol"]["split"]

    weights = load_file(model / "teacher.safetensors")
    vocab = list(read_items(model / "items.safetensors").item_ids)
    assert weights["item_emb.weight"].shape == (len(vocab) + 1, 16)
    assert all(isinstance(i, str) for i in vocab)
    assert (base / "checkpoints" / "teacher" / "trainer.json").exists()


def test_bad_data_writes_failure_file_and_exits_nonzero(tmp_path):
    bad = write_csv(tmp_path / "src" / "bad.csv", ["user", "item_id", "timestamp"], [["u", "i", 1]])
    base = lay_out(tmp_path / "b", bad)
    proc = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(base)})
    assert proc.returncode == 2
    reason = (base / "output" / "failure").read_text()
    assert "missing column(s) 'user_id'" in reason and "bad.csv" in reason
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_bad_hyperparameter_and_missing_channel(tmp_path, synthetic_csv):
    base = lay_out(tmp_path / "h", synthetic_csv, hp={"epochs": "many"})
    proc = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(base)})
    assert proc.returncode == 2 and "epochs='many'" in (base / "output" / "failure").read_text()
    empty = tmp_path / "e"
    (empty / "input" / "config").mkdir(parents=True)
    proc = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(empty)})
    assert proc.returncode == 2
    assert "no such file or directory" in (empty / "output" / "failure").read_text()


@pytest.mark.parametrize("setting", ["n_heads=0", "d_model=-8", "lr=0", "epochs=x"])
def test_cli_bad_settings_are_one_line(tmp_path, synthetic_csv, setting):
    proc = run_training(
        ["train", "--data", str(synthetic_csv), "--output", str(tmp_path / "o"), "--set", setting]
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_cli_missing_hyperparameters_file(tmp_path, synthetic_csv):
    proc = run_training(
        [
            "train",
            "--data",
            str(synthetic_csv),
            "--output",
            str(tmp_path / "o"),
            "--hyperparameters",
            str(tmp_path / "nope.json"),
        ]
    )
    assert proc.returncode == 2 and "no such hyperparameters file" in proc.stderr


@pytest.mark.slow  # tens of seconds: make test-slow and CI run it
def test_resumes_from_checkpoint(tmp_path, synthetic_csv):
    # GIVEN a finished 2-epoch run
    base = lay_out(tmp_path / "r", synthetic_csv)
    first = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(base)})
    assert first.returncode == 0, first.stderr[-2000:]
    # WHEN restarted with a larger epoch budget (as a spot restart would continue)
    (base / "input" / "config" / "hyperparameters.json").write_text(
        json.dumps({**TINY_HP, "epochs": "3"})
    )
    second = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(base)})
    # THEN it starts at epoch 3, not 1
    assert second.returncode == 0, second.stderr[-2000:]
    epochs = [ln.split()[0] for ln in second.stdout.splitlines() if ln.startswith("epoch=")]
    assert epochs == ["epoch=3"]
    assert "resumed from" in second.stderr
    history = json.loads((base / "model" / "history.json").read_text())
    assert [r["epoch"] for r in history["teacher"]] == [1, 2, 3]
    # the finished student phases were not trained again
    assert "student_epoch=" not in second.stdout


def test_sigterm_stops_cleanly_and_keeps_checkpoint(tmp_path, ml100k_small):
    inter, _ = ml100k_small
    base = lay_out(tmp_path / "s", inter, hp={"epochs": "200", "patience": "200"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "train"],
        cwd=REPO,
        env={**__import__("os").environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (base / "checkpoints" / "teacher" / "trainer.json").exists():
        assert time.time() < deadline and proc.poll() is None, "no checkpoint was written"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "SIGTERM" in err and "Traceback" not in err
    assert not (base / "output" / "failure").exists()
    state = json.loads((base / "checkpoints" / "teacher" / "trainer.json").read_text())
    assert state["epoch"] >= 1


def _time_split_test_users(rows: list, test_after: float) -> int:
    """Users with an interaction before the valid cut-off and one at or after the test
    cut-off (training/split.py's rule), counted here from the rows themselves."""
    from training.split import TIME_VALID_AFTER

    times = np.array([r[2] for r in rows], dtype=np.float64)
    c_v = np.quantile(times, 1.0 - TIME_VALID_AFTER, method="higher")
    c_t = np.quantile(times, 1.0 - test_after, method="higher")
    before = {r[0] for r in rows if r[2] < c_v}
    return len(before & {r[0] for r in rows if r[2] >= c_t})


@pytest.mark.slow  # tens of seconds each: make test-slow and CI run them
@pytest.mark.parametrize("split", ["loo", "time"])
def test_ddp_two_cpu_processes(tmp_path, split):
    """torchrun with 2 gloo processes on CPU learns the synthetic pattern, like one process,
    under either split: every evaluated user counted once across the two ranks."""
    from tests.conftest import synthetic_rows
    from training.split import TIME_TEST_AFTER

    rows = synthetic_rows(n_users=200, n_items=80, length=15)
    src = write_csv(tmp_path / "src" / "seq.csv", ["user_id", "item_id", "timestamp"], rows)
    hp = {"processes_per_host": "2", "epochs": "6", "d_model": "32", "lr": "0.005"}
    base = lay_out(tmp_path / "ddp", src, hp=hp | {"split": split})
    proc = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(base), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((base / "model" / "metrics.json").read_text())
    assert doc["summary"]["world_size"] == 2
    assert doc["summary"]["split"]["name"] == split
    test = {name: doc["metrics"][name]["test"]["full"]["ndcg@10"] for name in doc["metrics"]}
    # sound: the model learned the +1 walk and beats popularity (and recent popularity) by far
    assert test["teacher"] > 0.5 and test["teacher"] > 3 * test["popularity"]
    assert test["teacher"] > 3 * test["recent_popularity"]
    users = 200 if split == "loo" else _time_split_test_users(rows, TIME_TEST_AFTER)
    assert 0 < users <= 200
    assert doc["metrics"]["teacher"]["test"]["full"]["users"] == users  # no double count
