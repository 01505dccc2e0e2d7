"""Learning-rate decay on a plateau, and the refit on train + valid after
model selection."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_HP, run_training


@pytest.mark.slow  # tens of seconds: make test-slow and CI run it
def test_refit_reports_test_only_and_decay_is_checkpointed(tmp_path, synthetic_csv):
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    args = ["train", "--data", str(synthetic_csv), "--output", str(out)]
    args += ["--checkpoints", str(ckpt)]
    hp = {**TINY_HP, "epochs": "4", "patience": "4", "student": "false"}
    hp |= {"refit": "true", "lr_decay": "0.5", "lr": "0.01"}
    for key, value in hp.items():
        args += ["--set", f"{key}={value}"]
    proc = run_training(args)
    assert proc.returncode == 0, proc.stderr[-3000:]

    doc = json.loads((out / "metrics.json").read_text())
    # The refit trained on the valid items: only its test figures are recorded.
    for name in ("teacher_refit", "popularity_refit", "cooccurrence_refit"):
        assert set(doc["metrics"][name]) == {"test"}, name
    assert 0.0 <= doc["metrics"]["teacher_refit"]["test"]["full"]["ndcg@10"] <= 1.0
    history = json.loads((out / "history.json").read_text())
    best = doc["summary"]["models"]["teacher"]["best_epoch"]
    assert [row["epoch"] for row in history["teacher_refit"]] == list(range(1, best + 1))
    assert all("valid_ndcg@10" not in row for row in history["teacher_refit"])
    # ... replaying the selected run's learning rate epoch by epoch
    lrs = [row["lr"] for row in history["teacher"]]
    assert [row["lr"] for row in history["teacher_refit"]] == lrs[:best]

    # Each evaluated epoch that was not a new best halved the learning rate after it.
    expected, lr, top = [], 0.01, float("-inf")
    for row in history["teacher"]:
        expected.append(lr)
        if row["valid_ndcg@10"] > top:
            top = row["valid_ndcg@10"]
        else:
            lr *= 0.5
    assert lrs == expected
    saved = json.loads((ckpt / "teacher" / "optimizer.json").read_text())["optimizers"]
    # and the checkpoint resumes at the decayed rate, in every optimizer of the model
    assert {group["lr"] for one in saved for group in one["param_groups"]} == {lr}
