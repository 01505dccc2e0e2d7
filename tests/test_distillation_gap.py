"""The served model against the teacher as it is used, paired on the same test users."""

from __future__ import annotations

import numpy as np
import pytest
from lmrec.bundle import distillation_line

from training.evaluation import distillation_gap


def _users(values: list[float]) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def test_the_gap_is_a_share_and_a_paired_difference_on_the_same_users():
    # GIVEN per-user test NDCG@10 of the teacher alone, with transitions, and the served model
    rng = np.random.default_rng(0)
    teacher_t = rng.uniform(0.0, 1.0, 400)
    per_user = {
        "teacher": teacher_t * 0.5,
        "teacher+transitions": teacher_t,
        "student+transitions": teacher_t * 0.9,
    }
    # WHEN the gap is measured
    gap = distillation_gap(per_user, "student+transitions", "teacher+transitions")
    # THEN it is against teacher+transitions, as a share and a paired difference
    assert gap is not None
    assert gap["teacher"] == "teacher+transitions" and gap["users"] == 400
    assert gap["share"] == pytest.approx(0.9, abs=1e-4)
    mean, low, high = gap["paired"]
    assert mean == pytest.approx(-0.1 * teacher_t.mean(), abs=1e-4)
    assert low < mean < high < 0  # every user lost 10%: beyond noise
    assert "beyond noise" in distillation_line(gap)


def test_without_transitions_the_teacher_alone_is_the_reference():
    per_user = {"teacher": _users([0.5, 0.0, 1.0, 0.2]), "student": _users([0.0, 0.5, 1.0, 0.2])}
    gap = distillation_gap(per_user, "student", "teacher")
    assert gap is not None and gap["teacher"] == "teacher"
    assert gap["share"] == pytest.approx(1.0)
    line = distillation_line(gap)
    assert "keeps 100.0% of the test NDCG@10 of teacher;" in line and "within noise" in line


def test_no_gap_without_a_served_model_or_a_teacher():
    assert distillation_gap({"teacher": _users([0.5])}, None, "teacher") is None
    assert distillation_gap({"student": _users([0.5])}, "student", None) is None
    assert distillation_line(None) == ""


def test_rows_of_different_users_are_refused():
    per_user = {"teacher": _users([0.5, 0.1]), "student": _users([0.5])}
    with pytest.raises(ValueError, match="student: 1 users, teacher: 2"):
        distillation_gap(per_user, "student", "teacher")


def test_a_teacher_that_never_hits_gives_no_share_but_a_difference():
    per_user = {"teacher": _users([0.0, 0.0]), "student": _users([0.1, 0.0])}
    gap = distillation_gap(per_user, "student", "teacher")
    assert gap is not None and gap["share"] is None  # metrics.json stays strict JSON
    assert gap["paired"][0] == pytest.approx(0.05)
    assert "is measured against the test NDCG@10 of teacher;" in distillation_line(gap)
