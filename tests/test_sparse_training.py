"""Training whose step cost follows the batch, not the catalog: sampled softmax with a logQ
correction, sparse item-table gradients, candidate-set distillation."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.config import ModelConfig
from training.distill import Distiller
from training.ensemble import TeacherEnsemble
from training.model import SASRec
from training.optim import ModelOptimizer
from training.sampling import NegativeSampler, choose_loss, clamp_negatives


def _model(seed: int = 0, d: int = 16, n_items: int = 40) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(ModelConfig(n_items=n_items, d_model=d, n_heads=2, max_len=6, dropout=0.0))


ITEMS = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
TARGETS = torch.tensor([[0, 0, 4, 5, 6], [2, 3, 4, 5, 7]])
NEGATIVES = torch.tensor([6, 9, 12, 20, 27])


def test_log_q_correction_is_the_sampled_softmax_of_corrected_logits():
    # GIVEN a model, shared negatives and a non-uniform proposal q
    model = _model()
    counts = np.arange(41, dtype=np.float64)
    sampler = NegativeSampler(counts, torch.device("cpu"))
    # WHEN the loss is computed with the correction
    loss = model(ITEMS, TARGETS, NEGATIVES, sampler.log_q)
    # THEN it is the cross-entropy over [target, negatives] with log q subtracted from each
    # logit and the accidental hit (6 is a target) left out, as written out longhand here
    real = TARGETS != 0
    h, y, table = model.encode(ITEMS)[real], TARGETS[real], model.item_emb.weight
    logits = torch.cat([(h * table[y]).sum(-1, keepdim=True), h @ table[NEGATIVES].T], dim=1)
    logits = logits - torch.cat(
        [sampler.log_q[y][:, None], sampler.log_q[NEGATIVES][None].expand(len(y), -1)], 1
    )
    logits[:, 1:] = logits[:, 1:].masked_fill(NEGATIVES[None] == y[:, None], float("-inf"))
    assert loss.item() == pytest.approx(
        F.cross_entropy(logits, torch.zeros_like(y)).item(), rel=1e-5
    )
    # AND a uniform q changes nothing (its correction is one constant per row)
    uniform = NegativeSampler(np.ones(41), torch.device("cpu"), uniform_share=1.0)
    assert model(ITEMS, TARGETS, NEGATIVES, uniform.log_q).item() == pytest.approx(
        model(ITEMS, TARGETS, NEGATIVES).item(), rel=1e-5
    )


def test_sampler_draws_by_its_proposal():
    counts = np.zeros(101)
    counts[1] = 1000.0  # one very popular item
    sampler = NegativeSampler(counts, torch.device("cpu"))
    torch.manual_seed(0)
    draws = sampler.draw(20_000)
    assert int(draws.min()) >= 1 and int(draws.max()) <= 100
    # q(item 1) = 0.5 / 100 + 0.5 = 0.505
    assert (draws == 1).float().mean().item() == pytest.approx(0.505, abs=0.02)
    assert sampler.log_q[1].item() == pytest.approx(np.log(0.505), rel=1e-5)


def test_sparse_step_updates_only_the_rows_it_touched():
    # GIVEN a teacher with a sparse item table and its optimizer (with weight decay)
    model = _model()
    opt = ModelOptimizer(model, lr=0.01, weight_decay=0.1, sparse_items=True, fused=False)
    before = model.item_emb.weight.detach().clone()
    # WHEN one sampled step is taken
    loss = model(ITEMS, TARGETS, NEGATIVES)
    opt.zero_grad()
    loss.backward()
    # THEN the item table's gradient is sparse: the tied output layer with sampled negatives
    # goes through the embedding lookup only
    assert model.item_emb.weight.grad.is_sparse
    opt.step()
    changed = (model.item_emb.weight.detach() != before).any(1)
    touched = torch.unique(torch.cat([ITEMS.flatten(), TARGETS.flatten(), NEGATIVES]))
    touched = touched[touched != 0]
    assert set(torch.nonzero(changed).flatten().tolist()) == set(touched.tolist())
    # AND both optimizers follow one learning rate setting
    for group in opt.param_groups:
        group["lr"] = 0.5
    assert {o.param_groups[0]["lr"] for o in opt.optimizers} == {0.5}


def test_candidate_distillation_is_kl_on_the_candidate_set_with_sparse_student():
    # GIVEN two teachers, a student with a sparse item table, and shared negatives
    teachers = TeacherEnsemble([_model(1), _model(2)])
    student = _model(3, d=8)
    student.item_emb.sparse = True
    cfg = type("S", (), {"distill_alpha": 1.0, "distill_temperature": 1.0})
    loss = Distiller(student, teachers, cfg).eval()(ITEMS, TARGETS, NEGATIVES)
    # THEN the loss is KL(teacher || student) over [target, negatives] with the accidental
    # hit masked out of both distributions
    real = TARGETS != 0
    y = TARGETS[real]
    t = teachers.candidates_at(ITEMS, real, y, NEGATIVES, None)
    s = student.candidates_at(ITEMS, real, y, NEGATIVES, None)
    t, s = torch.log_softmax(t.clamp_min(-1e9), 1), torch.log_softmax(s.clamp_min(-1e9), 1)
    expected = (t.exp() * (t - s)).sum(1).mean()
    assert torch.allclose(loss, expected, atol=1e-5)
    # AND memory is positions x candidates; the student's gradient stays sparse
    assert t.shape == (int(real.sum()), 1 + len(NEGATIVES))
    loss.backward()
    assert student.item_emb.weight.grad.is_sparse
    assert all(p.grad is None for p in teachers.parameters())


def test_loss_follows_the_catalog_and_negatives_are_clamped(caplog):
    assert choose_loss("auto", 1_682) == "full"
    assert choose_loss("auto", 76_000) == "sampled"
    assert choose_loss("full", 76_000) == "full"  # asked for explicitly
    with caplog.at_level(logging.WARNING):
        assert clamp_negatives(2048, 1000) == 999
    assert "more than the catalog" in caplog.text
    assert clamp_negatives(100, 1000) == 100


def test_a_sampled_job_within_a_total_budget_ends_with_a_bundle(tmp_path, synthetic_csv):
    # GIVEN a job asked for far more epochs than its total budget allows, with the sampled
    # loss and more negatives than the catalog has
    import json

    from tests.conftest import TINY_HP, run_training

    out = tmp_path / "model"
    hp = {**TINY_HP, "epochs": "500", "patience": "500", "student_epochs": "500"}
    hp |= {"loss": "sampled", "num_negatives": "100000", "max_total_seconds": "8"}
    args = ["train", "--data", str(synthetic_csv), "--output", str(out)]
    for key, value in hp.items():
        args += ["--set", f"{key}={value}"]
    proc = run_training(args)
    # THEN it ends on its own with a bundle, having cut every phase short
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "num_negatives=100000 is more than the catalog" in proc.stderr
    doc = json.loads((out / "metrics.json").read_text())
    summary = doc["summary"]
    assert (out / "manifest.json").is_file()
    assert summary["models"]["teacher"]["epochs_run"] < 500
    assert summary["chosen"]["loss"] == "sampled"
    assert summary["chosen"]["num_negatives"] < 100_000
    # AND it says which small model it serves, and why
    assert summary["served"]["model"] in ("student", "student_plain")
    assert "valid NDCG@10" in summary["served_why"]
    # AND how much of the teacher it keeps, paired on the same test users, in the manifest too
    gap = summary["distillation"]
    assert gap["teacher"] in ("teacher", "teacher+transitions")
    assert gap["users"] == doc["metrics"]["teacher"]["test"]["full"]["users"]
    assert json.loads((out / "manifest.json").read_text())["distillation"] == gap
    assert "distillation: the served" in (out / "report.md").read_text()
    # AND every figure has its number of users and a confidence interval
    full = doc["metrics"]["teacher"]["test"]["full"]
    low, high = full["ndcg@10_ci95"]
    assert full["users"] > 0 and low < full["ndcg@10"] < high
    assert set(summary["phases"]) >= {"data", "teacher", "student", "student_plain", "evaluate"}
