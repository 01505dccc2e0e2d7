"""Scores computed once: the job's final evaluation reuses the valid figures training measured
on the kept weights, and those figures are exactly what scoring the kept weights again gives;
an evaluation that ends a phase's time is not followed by an empty epoch evaluated again."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import TINY_HP
from training import pipeline, trainer
from training.config import from_hyperparameters
from training.dist import DistEnv
from training.sagemaker import Paths
from training.trainer import Phase, evaluate_sharded, fit, model_scorer


@pytest.fixture
def small_run(tmp_path, synthetic_csv):
    hp = {**TINY_HP, "epochs": "3", "ema_decay": "0.9", "progress": "false"}
    cfg = from_hyperparameters(hp)
    paths = Paths(str(synthetic_csv), None, tmp_path / "model", None, None)
    data, split, negatives = pipeline.prepare_data(paths, cfg)
    return cfg, data, split, negatives


def test_kept_weights_valid_figures_equal_a_fresh_evaluation(small_run):
    # GIVEN a teacher trained with weight averaging (the kept weights are the average)
    cfg, data, split, negatives = small_run
    env = DistEnv()
    model = pipeline.build_teacher(cfg, data)
    phase = Phase("teacher", model, cfg.train.lr, cfg.train.epochs)
    result = fit(phase, split, cfg, env, negatives["valid"], None, threading.Event(), {})

    # THEN what training recorded for its best epoch is what scoring the kept weights gives
    fresh = evaluate_sharded(
        model_scorer(model, env.device), split, split.evalset("valid"), negatives["valid"], env, cfg
    )
    assert result.best_valid_metrics == fresh
    assert result.best_valid_metrics["full"]["ndcg@10"] == result.best_valid_ndcg


def test_final_evaluation_scores_valid_only_for_models_not_measured(small_run, monkeypatch):
    # GIVEN a trained teacher with its best epoch's figures, and an untrained model beside it
    cfg, data, split, negatives = small_run
    env = DistEnv()
    model = pipeline.build_teacher(cfg, data)
    phase = Phase("teacher", model, cfg.train.lr, 1)
    result = fit(phase, split, cfg, env, negatives["valid"], None, threading.Event(), {})
    other = pipeline.build_teacher(cfg, data, seed=7)
    models = {"teacher": other, "teacher_1": model}  # like an ensemble and its first member
    scored: list[tuple[str, int]] = []
    real = pipeline.evaluate_sharded

    def counting(scorer, split_, evalset, *args, **kw):
        scored.append((kw.get("desc", ""), len(evalset)))
        return real(scorer, split_, evalset, *args, **kw)

    monkeypatch.setattr(pipeline, "evaluate_sharded", counting)
    known = pipeline.measured_valid(models, {"teacher": (model, result)})
    metrics = pipeline.evaluate_models(models, split, negatives, cfg, env, known_valid=known)

    # THEN matched by object, not by name: the measured member's valid is reused, the rest scored
    assert known == {"teacher_1": result.best_valid_metrics}
    assert [desc for desc, _ in scored] == ["teacher valid", "teacher test", "teacher_1 test"]
    assert metrics["teacher_1"]["valid"] == result.best_valid_metrics
    assert set(metrics["teacher"]) == set(metrics["teacher_1"]) == {"valid", "test"}


def test_an_evaluation_that_uses_up_the_phase_time_ends_the_phase(small_run, monkeypatch):
    # GIVEN a phase whose deadline passes while its first epoch is being evaluated
    cfg, data, split, negatives = small_run
    model = pipeline.build_teacher(cfg, data)
    phase = Phase("teacher", model, cfg.train.lr, 5)
    real = trainer._validate

    def slow_validate(run, epoch, valid_negatives):
        row = real(run, epoch, valid_negatives)
        phase.deadline = time.perf_counter() - 1.0  # the evaluation took the time left
        return row

    monkeypatch.setattr(trainer, "_validate", slow_validate)
    env = DistEnv()
    result = fit(phase, split, cfg, env, negatives["valid"], None, threading.Event(), {})

    # THEN training stops after that epoch: no empty epoch (no step, loss 0) evaluated again
    assert [row["epoch"] for row in result.history] == [1]
    assert result.history[0]["train_loss"] > 0 and result.best_epoch == 1
