"""Scores computed once: the job's final evaluation reuses the valid figures training measured
on the kept weights, and those figures are exactly what scoring the kept weights again gives;
an evaluation that ends a phase's time is not followed by an empty epoch evaluated again."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.conftest import TINY_HP
from training import evaluate, evaluation, hybrid, pipeline, repeat_expert, trainer
from training.config import from_hyperparameters
from training.dist import DistEnv
from training.hybrid import TeacherBoost
from training.model import SASRec
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
    cfg.student.transitions = False
    env = DistEnv()
    model = pipeline.build_teacher(cfg, data)
    phase = Phase("teacher", model, cfg.train.lr, 1)
    result = fit(phase, split, cfg, env, negatives["valid"], None, threading.Event(), {})
    other = pipeline.build_teacher(cfg, data, seed=7)
    models = {"teacher": other, "teacher_1": model}  # like an ensemble and its first member
    passes = count_passes(monkeypatch)
    known = pipeline.measured_valid(models, {"teacher": (model, result)})
    ev = evaluation.evaluate_job(models, known, None, split, negatives, cfg, env, TeacherBoost())

    # THEN matched by object, not by name: the measured member's valid is reused, the rest scored
    assert known == {"teacher_1": result.best_valid_metrics}
    ours = [(model_id, part) for model_id, part in passes if model_id is not None]
    assert ours == [(id(other), "valid"), (id(other), "test"), (id(model), "test")]
    assert ev.metrics["teacher_1"]["valid"] == result.best_valid_metrics
    assert set(ev.metrics["teacher"]) == set(ev.metrics["teacher_1"]) == {"valid", "test"}


def count_passes(monkeypatch, skip=lambda: False) -> list[tuple[int | None, str]]:
    """Every scoring pass over valid or test users from now on (but while `skip()`), as
    (id of the SASRec scored, part); a baseline's pass records None."""
    passes: list[tuple[int | None, str]] = []
    last: dict[str, int | None] = {"model": None}
    real_score, real_batches = SASRec.score, evaluate.scored_batches

    def score(self, x):
        last["model"] = id(self)
        return real_score(self, x)

    def counting(scorer, split, evalset, *args, **kw):
        last["model"] = None
        for n, batch in enumerate(real_batches(scorer, split, evalset, *args, **kw)):
            if n == 0 and not skip():
                valid = np.array_equal(evalset.prefix_len, split.evalset("valid").prefix_len)
                passes.append((last["model"], "valid" if valid else "test"))
            yield batch

    monkeypatch.setattr(SASRec, "score", score)
    for module in (evaluate, hybrid, evaluation, repeat_expert):
        monkeypatch.setattr(module, "scored_batches", counting)
    return passes


def test_after_training_each_model_is_scored_once_on_valid_and_once_on_test(
    tmp_path, synthetic_csv, monkeypatch
):
    # GIVEN the whole job on a small log, with transitions and both students
    cfg = from_hyperparameters({**TINY_HP, "refit": "false"})
    paths = Paths(str(synthetic_csv), None, tmp_path / "model", None, None)
    training = {"on": False}
    real_validate = trainer._validate

    def validate(run, epoch, valid_negatives):  # training's own pass, each epoch
        training["on"] = True
        try:
            return real_validate(run, epoch, valid_negatives)
        finally:
            training["on"] = False

    evaluated: dict = {}
    real_job = pipeline.evaluate_job

    def job(models, *args, **kw):
        evaluated.update(models)
        return real_job(models, *args, **kw)

    monkeypatch.setattr(trainer, "_validate", validate)
    monkeypatch.setattr(pipeline, "evaluate_job", job)
    passes = count_passes(monkeypatch, skip=lambda: training["on"])
    document = pipeline.run(paths, cfg, DistEnv(), threading.Event())

    # THEN besides training's epochs each model is scored once on valid (its transition
    # grid; the teacher's, made for distillation, is reused) and once on test, though the
    # figures feed the table, the weights, the served choice and the gate
    names = {id(m): name for name, m in evaluated.items()}
    by_model: dict[str, list[str]] = {}
    for model_id, part in passes:
        if model_id is not None:
            by_model.setdefault(names[model_id], []).append(part)
    assert set(evaluated) == {"teacher", "student", "student_plain"}
    assert by_model == {name: ["valid", "test"] for name in evaluated}
    metrics = document["metrics"]
    assert {"teacher", "student", "student_plain", "cooccurrence"} <= set(metrics)
    assert document["summary"]["transitions"]["weight"].keys() == {"teacher", *evaluated}
    # AND every row says whether it is ahead of counting beyond noise, paired on the same
    # users (per-user NDCG@10 with ties in expectation: close to the row's own mean)
    cooc = metrics["cooccurrence"]["test"]["full"]
    assert "ndcg@10_vs_cooccurrence" not in cooc
    for name in ("teacher", "student", "student_plain", "popularity"):
        full = metrics[name]["test"]["full"]
        mean, low, high = full["ndcg@10_vs_cooccurrence"]
        assert low <= mean <= high
        assert mean == pytest.approx(full["ndcg@10"] - cooc["ndcg@10"], abs=0.02)


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
