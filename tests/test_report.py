"""training/report.py: what a reader of report.md needs, from the run's own records."""

from __future__ import annotations

from training.report import hyperparameters_table, results_table, sampled_protocol, write_report


def _block(ndcg: float) -> dict:
    return {"hr@10": 2 * ndcg, "ndcg@10": ndcg, "mrr": ndcg, "coverage@10": 0.1, "users": 50}


def _metrics(sampled_key: str) -> dict:
    return {
        name: {"test": {"full": _block(v), sampled_key: _block(3 * v)}}
        for name, v in (("teacher", 0.05), ("student", 0.04), ("popularity", 0.02))
    }


def _history(loss: float) -> list[dict]:
    return [{"epoch": e, "train_loss": loss / e, "valid_ndcg@10": 0.01 * e} for e in (1, 2, 3)]


SUMMARY = {
    "data": {"interactions": 1000, "users": 50, "items": 40},
    "data_fingerprint": "sha256:x",
    "evaluated_users": 50,
    "models": {
        n: {
            "parameters": 10,
            "macs_per_request": 100,
            "best_epoch": 3,
            "epochs_run": 3,
            "train_seconds": 1.0,
        }
        for n in ("teacher", "student")
    },
    "device": "cpu",
    "world_size": 1,
    "wall_seconds": 5.0,
}


def test_the_sampled_protocol_follows_sampled_negatives():
    # GIVEN a run evaluated with sampled_negatives=50
    metrics = _metrics("sampled50")
    # THEN the tables name that protocol, not a hard-coded sampled100
    assert sampled_protocol(metrics) == "sampled50"
    table = results_table(metrics)
    assert "sampled50 NDCG@10" in table and "sampled100" not in table
    assert "| 0.1500 |" in table  # the teacher's sampled50 NDCG@10


def test_report_marks_the_served_model_and_lists_the_hyperparameters(tmp_path):
    config = {
        "train": {"lr": 0.001, "loss": "full"},
        "student": {"distill_alpha": 0.7, "distill_temperature": 2.0},
    }
    histories = {"teacher": _history(7.0), "student": _history(2.0)}
    path = write_report(tmp_path, _metrics("sampled100"), histories, SUMMARY, config)
    text = path.read_text()
    assert "| student (served) |" in text
    assert "| train | `lr` | 0.001 |" in text
    assert "| student | `distill_temperature` | 2.0 |" in text
    assert "No confidence intervals" in text  # none recorded, none invented
    for png in ("training_curve.png", "models.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_regularisers_chosen_for_the_teachers_say_the_students_train_without():
    config = {"train": {"weight_decay": 0.1, "ema_decay": 0.99, "lr": 0.001}}
    chosen = {"regularised": "teachers", "given": ["ema_decay"]}
    table = hyperparameters_table(config, chosen)
    # chosen by the plan: the teachers' only; set by the user (given): every model's
    assert "| train | `weight_decay` | 0.1 (teachers; the students train with 0) |" in table
    assert "| train | `ema_decay` | 0.99 |" in table and "| train | `lr` | 0.001 |" in table
    assert "teachers;" not in hyperparameters_table(config, {"given": []})


def test_recorded_intervals_are_shown(tmp_path):
    metrics = _metrics("sampled100")
    metrics["student"]["test"]["full"]["ndcg@10_ci95"] = [0.035, 0.045]
    assert "0.0400 [0.0350, 0.0450]" in results_table(metrics)


def test_report_states_each_baselines_cost_and_choice(tmp_path):
    # GIVEN a run whose baselines recorded their cost, ALS tuned on valid and EASE ruled out
    costs = {
        "popularity": {"seconds": 0.12},
        "als": {
            "params": {"factors": 64, "regularization": 0.1, "alpha": 10.0},
            "grid": [
                {"factors": 64, "regularization": 0.1, "alpha": 1.0, "valid_ndcg@10": 0.031},
                {"factors": 64, "regularization": 0.1, "alpha": 10.0, "valid_ndcg@10": 0.043},
            ],
            "tune_seconds": 12.5,
            "test_seconds": 4.0,
            "peak_fit_mb": 95.2,
            "model_mb": 5.8,
        },
        "ease": {"skipped": "23,715 items > 5,000: too large"},
    }
    metrics = _metrics("sampled100")
    metrics["als"] = metrics.pop("popularity")
    summary = {**SUMMARY, "baselines": costs}
    text = write_report(tmp_path, metrics, {"teacher": _history(7.0)}, summary).read_text()
    # THEN the report has the seconds, the chosen point, the grid's valid figures, the memory
    assert "| als | 16.5 | factors 64, regularization 0.1, alpha 10 |" in text
    assert "64, 0.1, 1: 0.0310; 64, 0.1, 10: 0.0430 | 95.2 | 5.8 |" in text
    assert "| popularity | 0.1 |" in text
    assert "| ease | skipped: 23,715 items > 5,000: too large |" in text


def test_the_paired_difference_from_cooccurrence_is_shown_bold_beyond_noise():
    metrics = _metrics("sampled100")
    metrics["teacher"]["test"]["full"]["ndcg@10_vs_cooccurrence"] = [0.012, 0.004, 0.020]
    metrics["student"]["test"]["full"]["ndcg@10_vs_cooccurrence"] = [0.010, -0.002, 0.022]
    rows = {line.split(" | ")[0]: line for line in results_table(metrics).splitlines()}
    assert "NDCG@10 - co-occurrence, paired" in results_table(metrics)
    assert "**+0.0120 [+0.0040, +0.0200]**" in rows["| teacher"]  # beyond noise
    assert "| +0.0100 [-0.0020, +0.0220] |" in rows["| student (served)"]  # a tie
    assert "| - |" in rows["| popularity"]  # not measured: no figure
