"""Sizes that adapt to the data, the job's time budget, and which small model is served."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import REPO
from training.config import ConfigError, RunConfig, from_hyperparameters, load_hyperparameters
from training.data import Interactions
from training.pipeline import choose_served
from training.plan import (
    MAX_EPOCHS,
    SHARES,
    Budget,
    adapt,
    budget_line,
    student_regularisers,
    time_goal,
)
from training.trainer import FitResult


def _data(n_users: int, n_items: int, n_interactions: int) -> Interactions:
    per_user = n_interactions // n_users
    offsets = np.arange(n_users + 1, dtype=np.int64) * per_user
    return Interactions(
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        offsets=offsets,
        items=np.ones(int(offsets[-1]), np.int64),
        timestamps=np.zeros(int(offsets[-1])),
        fingerprint="sha256:x",
    )


def test_small_data_keeps_the_full_softmax_and_many_epochs(capsys):
    cfg = from_hyperparameters({"max_total_seconds": "0"})  # no budget: epochs from the size
    chosen = adapt(cfg, _data(943, 1_682, 100_000))
    assert chosen["loss"] == "full" and cfg.train.loss == "full"
    assert cfg.train.epochs == 50 and cfg.train.patience == 5
    # 943 users of 106 items: 2,412 windows of 50, so batches of 32 (75 steps an epoch)
    assert cfg.train.batch_size == 32
    assert chosen["d_model"] == cfg.model.d_model == 128  # the full softmax's width
    assert chosen["eval_users"] == 943  # every user
    assert chosen["student_lr"] == cfg.student.student_lr == 2e-3
    assert "chosen for this data: loss=full, epochs=50" in capsys.readouterr().err


def test_large_data_gets_the_sampled_loss_and_fewer_larger_steps():
    cfg = from_hyperparameters({"max_total_seconds": "0"})
    chosen = adapt(cfg, _data(100_000, 76_000, 1_200_000))
    assert chosen["loss"] == "sampled" and cfg.train.num_negatives == 2048
    assert (cfg.train.epochs, cfg.student.student_epochs) == (4, 4)
    assert (cfg.train.batch_size, cfg.train.patience) == (256, 2)
    assert chosen["eval_users"] == 10_000
    # the sampled loss's students learn at half the full softmax's rate (plan.STUDENT_LR)
    assert chosen["student_lr"] == cfg.student.student_lr == 1e-3
    assert chosen["d_model"] == cfg.model.d_model == 64  # the sampled loss's width


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ({}, (0.1, 0.99)),  # the full softmax's defaults
        ({"weight_decay": "0"}, (0.0, 0.99)),  # 0 set by hand is kept, not taken for "auto"
        ({"ema_decay": "0", "weight_decay": "0.3"}, (0.3, 0.0)),
    ],
)
def test_the_full_softmax_gets_weight_decay_and_averaging_unless_set(given, want):
    cfg = from_hyperparameters({"max_total_seconds": "0", **given})
    chosen = adapt(cfg, _data(943, 1_682, 100_000), say=False)
    assert (cfg.train.weight_decay, cfg.train.ema_decay) == want
    assert ("weight_decay" in chosen) == ("weight_decay" not in given)


def test_the_sampled_loss_gets_no_regularisers_by_default():
    cfg = from_hyperparameters({"max_total_seconds": "0"})
    adapt(cfg, _data(100_000, 76_000, 1_200_000), say=False)
    assert (cfg.train.weight_decay, cfg.train.ema_decay) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ({}, (0.0, 0.0)),  # the teachers' automatic ones are not the students'
        ({"weight_decay": "0.1"}, (None, 0.0)),  # set by hand: every model gets it
        ({"weight_decay": "0.2", "ema_decay": "0.9"}, (None, None)),
    ],
)
def test_the_students_train_without_the_teachers_automatic_regularisers(given, want):
    cfg = from_hyperparameters({"max_total_seconds": "0", **given})
    adapt(cfg, _data(943, 1_682, 100_000), say=False)
    assert student_regularisers(cfg) == want


def test_the_batch_is_halved_only_while_an_epoch_has_few_steps():
    cfg = from_hyperparameters({"max_total_seconds": "0"})
    chosen = adapt(cfg, _data(31_000, 24_000, 280_000), say=False)  # Games: 9 a user
    assert chosen["batch_size"] == 128  # 31,000 windows: 242 steps
    cfg = from_hyperparameters({"max_total_seconds": "0", "max_len": "200"})
    chosen = adapt(cfg, _data(4_000, 1_682, 424_000), say=False)  # 4,000 windows of 200
    assert chosen["batch_size"] == 32  # 64 would give 62.5 steps
    cfg = from_hyperparameters({"max_total_seconds": "0", "max_len": "200"})
    chosen = adapt(cfg, _data(4_200, 1_682, 445_200), say=False)
    assert chosen["batch_size"] == 64  # 4,200 windows: 65.6 steps of 64


def test_a_chosen_width_that_the_heads_do_not_divide_is_refused():
    cfg = from_hyperparameters({"max_total_seconds": "0", "n_heads": "3"})
    with pytest.raises(ConfigError, match=r"d_model 128 .* n_heads 3; set d_model too"):
        adapt(cfg, _data(943, 1_682, 100_000), say=False)


def test_what_the_user_set_is_kept_and_negatives_are_clamped():
    given = {"epochs": "7", "loss": "sampled", "batch_size": "32", "student_lr": "0.004"}
    cfg = from_hyperparameters(given)
    chosen = adapt(cfg, _data(500, 1_000, 50_000))
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.student.student_lr) == (7, 32, 0.004)
    assert chosen["num_negatives"] == 999  # 2,048 asked, 999 other items exist
    assert chosen["given"] == ["batch_size", "epochs", "loss", "student_lr"]


def test_budget_shares():
    budget = Budget(began=100.0, total=1000.0)
    assert budget.deadline("teacher") == 500.0
    assert budget.deadline("teacher_2") == 500.0  # ensemble members share the teachers' part
    assert budget.deadline("student") == 800.0
    assert budget.deadline("student_plain") == 900.0
    assert budget.deadline("teacher_refit_2") == 950.0
    assert Budget(began=0.0).deadline("teacher") == 0.0  # no budget


def test_teacher_share_gives_what_it_leaves_to_the_distilled_student():
    budget = Budget(began=0.0, total=1000.0, teacher_share=0.4)
    phases = ("teacher", "teacher_2", "student", "student_plain", "teacher_refit")
    assert [budget.deadline(p) for p in phases] == [400.0, 400.0, 700.0, 800.0, 850.0]
    assert budget.deadline("export") == 1000.0  # what is not a phase ends with the budget
    assert RunConfig().train.teacher_share == SHARES["teacher"]  # one default, two places


def test_teacher_share_is_checked_and_printed():
    cfg = RunConfig()
    cfg.train.max_total_seconds, cfg.train.teacher_share = 1000.0, 0.4
    assert "teacher by 400 s, student by 700 s, student_plain by 800 s" in budget_line(cfg)
    for bad in ("0", "0.6", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="teacher_share"):
            from_hyperparameters({"teacher_share": bad})


@pytest.mark.parametrize(
    ("distilled", "plain", "served"),
    [
        (0.3, 0.2, "student"),
        (0.2, 0.3, "student_plain"),
        # 1,000 valid users: a lead under half of one user's hit (0.0005) is a tie, and the
        # distilled student wins it
        (0.2, 0.2004, "student"),
        (0.2, 0.2006, "student_plain"),
    ],
)
def test_the_better_small_model_on_valid_is_served(distilled, plain, served):
    trained = {
        "student": (None, FitResult(best_valid_ndcg=distilled)),
        "student_plain": (None, FitResult(best_valid_ndcg=plain)),
    }
    assert choose_served(trained, users=1000) == served


def test_a_time_goal_from_the_data_size_when_nothing_sets_the_length(capsys):
    small, large = from_hyperparameters({}), from_hyperparameters({})
    assert adapt(small, _data(10_000, 4_800, 100_000))["max_total_seconds"] == 480.0
    assert adapt(large, _data(200_000, 76_000, 2_000_000))["max_total_seconds"] == 920.0
    assert (small.train.max_total_seconds, large.train.max_total_seconds) == (480.0, 920.0)
    assert "max_total_seconds=480.0" in capsys.readouterr().err
    # the floor: 120 s + 400 s per million reaches it at 900k interactions (rung M)
    assert (time_goal(0), time_goal(899_000), time_goal(901_000)) == (480.0, 480.0, 480.0)
    assert time_goal(1_000_000) == 520.0
    assert time_goal(12_600_000) == 3_000.0  # capped: L stays under an hour
    # under a budget the deadlines end training, the epochs are only a ceiling
    assert (large.train.epochs, large.student.student_epochs) == (MAX_EPOCHS, MAX_EPOCHS)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"epochs": "200"}, 480.0),
        ({"max_total_seconds": "0"}, 0.0),
        ({"max_total_seconds": "900"}, 900.0),
    ],
)
def test_only_max_total_seconds_changes_the_goal_setting_epochs_keeps_it(given, expected):
    cfg = from_hyperparameters(given)
    chosen = adapt(cfg, _data(10_000, 4_800, 100_000), say=False)
    assert chosen["max_total_seconds"] == cfg.train.max_total_seconds == expected


@pytest.mark.parametrize(
    ("given", "teacher", "students"),
    [
        ({"epochs": "3"}, 3, 3),  # a short teacher means short students too
        ({"epochs": "3", "student_epochs": "9"}, 3, 9),
        ({"max_total_seconds": "0"}, 50, 50),
    ],
)
def test_the_students_epochs_follow_the_teachers_unless_set(given, teacher, students):
    cfg = from_hyperparameters(given)
    adapt(cfg, _data(943, 1_682, 100_000), say=False)
    assert (cfg.train.epochs, cfg.student.student_epochs) == (teacher, students)


def test_the_budget_line_says_what_the_job_runs_under(capsys):
    cfg = from_hyperparameters({"epochs": "20"})
    adapt(cfg, _data(10_000, 4_800, 100_000))
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("time budget: 480 s for the whole job (auto from the data's size; ")
    assert "teacher by 192 s, student by 336 s, student_plain by 384 s" in line
    assert line.endswith(
        "at most 20 teacher epochs (set), 20 student epochs, patience 5 evaluations"
    )


@pytest.mark.parametrize("name", ["ml-100k", "games"])
def test_a_preset_that_fixes_epochs_says_it_has_no_budget(name, capsys):
    hp = load_hyperparameters(REPO / "training" / "presets" / f"{name}.json")
    assert hp["max_total_seconds"] == "0"  # explicit in the file, not implied by epochs
    cfg = from_hyperparameters(hp)
    # the start their published figures were measured with, before cooccurrence was the default
    assert cfg.train.item_init == "random"
    adapt(cfg, _data(943, 1_682, 100_000))
    line = capsys.readouterr().err.splitlines()[-1]
    epochs, students = hp["epochs"], hp["student_epochs"]
    assert line.startswith("time budget: none (max_total_seconds=0 set); ")
    assert f"at most {epochs} teacher epochs (set), {students} student epochs (set)" in line
