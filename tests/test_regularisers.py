"""Weight averaging (ema_decay) and input-item noise (input_noise) in the trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import LEARNABLE_HP, TINY_HP, run_training
from training.averaging import WeightAverage
from training.batching import replace_items
from training.config import ConfigError, from_hyperparameters


def test_average_follows_the_ema_rule_and_is_applied_only_inside_the_block():
    # GIVEN a one-parameter model whose weight we set by hand
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    expected = 0.0
    # WHEN the weight moves to 1, 2, 3 with an update after each step
    for step, value in enumerate((1.0, 2.0, 3.0), start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update()
        decay = min(0.5, (1 + step) / (10 + step))  # warm-up, then the set decay
        expected = decay * expected + (1 - decay) * value
    # THEN the average holds the EMA, the model holds it only inside applied()
    with average.applied():
        assert model.weight.item() == pytest.approx(expected)
    assert model.weight.item() == 3.0
    # AND its state round-trips (a resumed job continues the same average)
    fresh = WeightAverage(model, decay=0.5)
    fresh.load(average.state())
    assert fresh.steps == 3
    with fresh.applied():
        assert model.weight.item() == pytest.approx(expected)


def test_input_noise_replaces_about_the_share_asked_and_never_padding():
    rng = np.random.default_rng(0)
    inputs = np.zeros((200, 50), dtype=np.int64)
    inputs[:, 20:] = rng.integers(1, 1000, size=(200, 30))
    noisy = replace_items(inputs, 0.2, 1000, rng)
    changed = noisy != inputs
    assert not changed[:, :20].any()  # padding stays padding
    assert (noisy[:, 20:] >= 1).all() and (noisy <= 1000).all()
    assert changed[:, 20:].mean() == pytest.approx(0.2, abs=0.02)  # (a few redraw themselves)
    assert (replace_items(inputs, 0.0, 1000, rng) == inputs).all()


@pytest.mark.parametrize("bad", ["1", "-0.1"])
def test_bad_regulariser_values_are_refused(bad):
    for name in ("ema_decay", "input_noise"):
        with pytest.raises(ConfigError, match=name):
            from_hyperparameters({name: bad})


@pytest.mark.slow  # tens of seconds: make test-slow and CI run it
def test_averaged_weights_are_what_is_exported_and_resumed(tmp_path, synthetic_csv):
    # GIVEN a job with weight averaging and input noise, stopped after 2 of 4 epochs
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    hp = {**LEARNABLE_HP, "student": "false", "patience": "10", "ema_decay": "0.9"}
    hp["input_noise"] = "0.05"

    def train(epochs: str):
        args = ["train", "--data", str(synthetic_csv), "--output", str(out)]
        args += ["--checkpoints", str(ckpt)]
        for key, value in {**hp, "epochs": epochs}.items():
            args += ["--set", f"{key}={value}"]
        proc = run_training(args)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    train("2")
    steps = int(load_file(ckpt / "teacher" / "extra.safetensors")["_steps"][0])
    assert steps > 0  # the average is checkpointed with the model
    # WHEN the same job runs on (the identity names the epochs only for a refit)
    second = train("4")
    assert "resumed from" in second.stderr
    # the average carried on from the checkpoint: epochs 3-4 added to epochs 1-2's steps
    assert int(load_file(ckpt / "teacher" / "extra.safetensors")["_steps"][0]) == 2 * steps
    doc = json.loads((out / "metrics.json").read_text())
    # THEN the exported teacher is the average kept at the selected epoch, and it learned
    best = load_file(ckpt / "teacher" / "best.safetensors")
    exported = load_file(out / "teacher.safetensors")
    assert torch.equal(best["item_emb.weight"], exported["item_emb.weight"])
    live = load_file(ckpt / "teacher" / "model.safetensors")
    assert not torch.equal(live["item_emb.weight"], exported["item_emb.weight"])
    test = doc["metrics"]["teacher"]["test"]["full"]["ndcg@10"]
    assert test > 2 * doc["metrics"]["popularity"]["test"]["full"]["ndcg@10"]
    assert doc["config"]["train"]["ema_decay"] == 0.9


def test_the_teacher_gets_the_automatic_average_and_the_students_do_not(tmp_path, synthetic_csv):
    # GIVEN a small catalog (the full softmax) and no regulariser set
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    args = ["train", "--data", str(synthetic_csv), "--output", str(out), "--checkpoints", str(ckpt)]
    for key, value in {**TINY_HP, "student_epochs": "1", "progress": "false"}.items():
        args += ["--set", f"{key}={value}"]
    # WHEN the job runs
    proc = run_training(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # THEN the plan chose the teachers' weight decay and average, recorded in the summary
    chosen = json.loads((out / "metrics.json").read_text())["summary"]["chosen"]
    assert (chosen["weight_decay"], chosen["ema_decay"]) == (0.1, 0.99)
    assert chosen["regularised"] == "teachers"
    # AND only the teacher kept a weight average; the students trained without one
    assert "_steps" in load_file(ckpt / "teacher" / "extra.safetensors")
    for student in ("student", "student_plain"):
        assert "_steps" not in load_file(ckpt / student / "extra.safetensors")

    # AND each checkpoint's identity holds what its phase trained with, so a student never
    # resumes one from a job whose students had the pair set by hand (the same config)
    def regularisers(phase: str) -> list[float]:
        state = json.loads((ckpt / phase / "trainer.json").read_text())
        return state["identity"]["regularisers"]

    assert regularisers("teacher") == [0.1, 0.99]
    assert regularisers("student") == regularisers("student_plain") == [0.0, 0.0]
    # AND the same job again resumes every phase (the identity survives its JSON round trip)
    again = run_training(args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("resumed from") == 3, again.stderr[-3000:]
