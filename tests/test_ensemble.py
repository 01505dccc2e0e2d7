"""Several teachers from different seeds, used as one (the `teachers` hyperparameter)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import LEARNABLE_HP, run_training
from training.config import ConfigError, ModelConfig, from_hyperparameters
from training.distill import Distiller
from training.ensemble import TeacherEnsemble, as_teacher
from training.model import SASRec


def _models(n: int, cfg: ModelConfig | None = None) -> list[SASRec]:
    cfg = cfg or ModelConfig(n_items=30, d_model=16, n_heads=2, n_blocks=1, max_len=8)
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(SASRec(cfg).eval())
    return out


def test_ensemble_scores_are_the_mean_log_softmax_of_its_members():
    a, b = _models(2)
    items = torch.tensor([[0, 0, 3, 7, 2, 9], [1, 2, 3, 4, 5, 6]])
    score = TeacherEnsemble([a, b]).score(items)
    expected = (torch.log_softmax(a.score(items), 1) + torch.log_softmax(b.score(items), 1)) / 2
    assert torch.allclose(score, expected)
    assert torch.isneginf(score[:, 0]).all()  # padding is never recommended
    # A distribution over the catalog stays one: each member's rows sum to 1.
    assert torch.allclose(torch.log_softmax(a.score(items), 1).exp().sum(1), torch.ones(2))


def test_one_member_is_the_model_itself_and_members_must_match():
    (a,) = _models(1)
    assert as_teacher([a]) is a  # one teacher: raw logits, exactly as before
    other = dataclasses.replace(a.cfg, d_model=8)
    with pytest.raises(ValueError, match="share one model configuration"):
        TeacherEnsemble([a, *_models(1, other)])


def test_distillation_target_of_an_ensemble_is_its_mean_log_softmax():
    # GIVEN a student distilled at temperature 1 with alpha 1 (KL only) from two teachers
    teachers = _models(2)
    torch.manual_seed(5)
    student = SASRec(dataclasses.replace(teachers[0].cfg, d_model=8, n_heads=1)).eval()
    cfg = type("S", (), {"distill_alpha": 1.0, "distill_temperature": 1.0, "distill_topk": 0})
    items = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]])
    targets = torch.tensor([[0, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    loss = Distiller(student, TeacherEnsemble(teachers), cfg).eval()(items, targets)
    # THEN the loss is KL(softmax(mean log p) || student) over the real positions
    real = targets != 0
    target = torch.log_softmax(
        torch.stack([torch.log_softmax(t.logits_at(items, real), 1) for t in teachers]).mean(0), 1
    )
    s = torch.log_softmax(student.logits_at(items, real), 1)
    expected = (target.exp() * (target - s)).sum(1).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.slow  # tens of seconds: make test-slow and CI run it
def test_training_job_with_two_teachers(tmp_path, synthetic_csv):
    # GIVEN a run that trains two teachers, distils a student from them and refits both
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    args = ["train", "--data", str(synthetic_csv), "--output", str(out), "--checkpoints", str(ckpt)]
    hp = {**LEARNABLE_HP, "teachers": "2", "refit": "true", "epochs": "3", "student_epochs": "2"}
    for key, value in hp.items():
        args += ["--set", f"{key}={value}"]
    proc = run_training(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "metrics.json").read_text())
    metrics = doc["metrics"]

    # THEN "teacher" is the ensemble, reported beside each member, and it learned
    for name in ("teacher", "teacher_1", "teacher_2", "student"):
        assert set(metrics[name]) == {"valid", "test"}, name
    assert set(metrics["teacher_refit"]) == {"test"}  # the refit ensemble: test only
    assert "teacher_refit_2" not in metrics
    teacher = metrics["teacher"]["test"]["full"]["ndcg@10"]
    assert teacher > 2 * metrics["popularity"]["test"]["full"]["ndcg@10"]
    # the members were trained from different seeds, so they are different models
    first, second = load_file(out / "teacher.safetensors"), load_file(out / "teacher_2.safetensors")
    assert not torch.equal(first["item_emb.weight"], second["item_emb.weight"])
    assert (out / "teacher_2_config.json").is_file()
    history = json.loads((out / "history.json").read_text())
    assert {"teacher", "teacher_2", "teacher_refit", "teacher_refit_2"} <= set(history)
    summary = doc["summary"]
    assert summary["teacher_phases"] == ["teacher", "teacher_2"]
    members = summary["models"]["teacher"], summary["models"]["teacher_2"]
    assert summary["train_seconds"] == pytest.approx(sum(m["train_seconds"] for m in members))
    assert "teacher_2_train_loss=" in proc.stdout  # its own SageMaker metric lines

    # WHEN the job is restarted on its checkpoints (a spot interruption after it finished)
    again = run_training(args)
    assert again.returncode == 0, again.stderr[-3000:]
    # THEN every phase resumes instead of retraining, to the same figures
    assert again.stderr.count("resumed from") == 5  # 2 teachers, the student, 2 refits
    redo = json.loads((out / "metrics.json").read_text())["metrics"]
    assert redo["teacher"]["test"] == metrics["teacher"]["test"]


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "two"])
def test_bad_teacher_counts_are_refused(bad):
    with pytest.raises(ConfigError, match="teachers"):
        from_hyperparameters({"teachers": bad})
