"""Learning-rate schedules (decay on a plateau, cosine), and the refit on train + valid after
model selection."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_HP, run_training
from training.trainer import cosine_lr


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
    groups = json.loads((ckpt / "teacher" / "optimizer.json").read_text())["param_groups"]
    assert groups[0]["lr"] == lr  # and the checkpoint resumes at the decayed rate


def test_cosine_schedule_evaluates_from_eval_from_and_the_refit_replays_it(tmp_path, synthetic_csv):
    # GIVEN a cosine run over 4 epochs, validated from epoch 3 on, with a refit
    out = tmp_path / "model"
    args = ["train", "--data", str(synthetic_csv), "--output", str(out)]
    hp = {**TINY_HP, "epochs": "4", "patience": "4", "student": "false", "lr": "0.01"}
    hp |= {"refit": "true", "lr_schedule": "cosine", "warmup_epochs": "0.5", "eval_from": "3"}
    for key, value in hp.items():
        args += ["--set", f"{key}={value}"]
    proc = run_training(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    # THEN epochs 1-2 only trained; 3 and 4 were validated
    assert ["valid_ndcg@10" in row for row in history["teacher"]] == [False, False, True, True]
    # AND each epoch started at the cosine rate (0 at the start of the warmup)
    assert [row["lr"] for row in history["teacher"]] == pytest.approx(
        [cosine_lr(0.01, e, 4, 0.5) for e in range(4)]
    )
    # AND the refit ran the same schedule up to the selected epoch
    best = json.loads((out / "metrics.json").read_text())["summary"]["models"]["teacher"]
    refit = history["teacher_refit"]
    assert len(refit) == best["best_epoch"]
    assert [row["lr"] for row in refit] == pytest.approx(
        [row["lr"] for row in history["teacher"][: len(refit)]]
    )


def test_a_time_budget_stop_is_evaluated_before_eval_from(tmp_path, synthetic_csv):
    # GIVEN a teacher validated only from epoch 3 on, with a time budget that ends it after
    # epoch 1, and a student (eval_from is the teachers')
    out = tmp_path / "model"
    args = ["train", "--data", str(synthetic_csv), "--output", str(out)]
    hp = {**TINY_HP, "epochs": "4", "eval_from": "3", "max_train_seconds": "0.001"}
    hp |= {"student_plain": "false", "student_max_seconds": "600"}
    for key, value in hp.items():
        args += ["--set", f"{key}={value}"]
    proc = run_training(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    # THEN the epoch that used up the budget was validated, so the kept weights were measured
    assert len(history["teacher"]) == 1 and "valid_ndcg@10" in history["teacher"][0]
    summary = json.loads((out / "metrics.json").read_text())["summary"]["models"]
    assert summary["teacher"]["best_epoch"] == 1
    # AND the student was validated every epoch
    assert all("valid_ndcg@10" in row for row in history["student"])
