"""The teacher's training step: the sampled-softmax loss and the cosine learning rate."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from training.config import ModelConfig
from training.model import SASRec
from training.trainer import cosine_lr


def test_sampled_loss_is_cross_entropy_over_target_and_negatives():
    # GIVEN a small teacher without dropout, a left-padded batch and shared negatives, one of
    # which is a row's own target (an accidental hit)
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=30, d_model=16, n_heads=2, max_len=6, dropout=0.0))
    items = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    targets = torch.tensor([[0, 0, 4, 5, 6], [2, 3, 4, 5, 7]])
    negatives = torch.tensor([6, 9, 12, 20, 27])
    # WHEN the loss is computed by the model
    loss = model(items, targets, negatives)
    # THEN it is the cross-entropy of [target, negatives] per real position, the target's
    # own copy among the negatives left out, as written out longhand here
    real = targets != 0
    h = model.encode(items)[real]
    y = targets[real]
    table = model.item_emb.weight
    logits = torch.cat([(h * table[y]).sum(-1, keepdim=True), h @ table[negatives].T], dim=1)
    logits[:, 1:] = logits[:, 1:].masked_fill(negatives[None] == y[:, None], float("-inf"))
    expected = F.cross_entropy(logits, torch.zeros_like(y))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # AND its gradient reaches the item table through every lookup
    loss.backward()
    assert table.grad[[3, 6, 9, 27]].abs().sum(dim=1).gt(0).all()


def test_cosine_learning_rate():
    # linear warmup over half an epoch, then half a cosine to 0 at the last epoch
    assert cosine_lr(1e-3, 0.0, 8, 0.5) == 0.0
    assert cosine_lr(1e-3, 0.25, 8, 0.5) == pytest.approx(5e-4)
    assert cosine_lr(1e-3, 0.5, 8, 0.5) == pytest.approx(1e-3)
    assert cosine_lr(1e-3, 4.25, 8, 0.5) == pytest.approx(5e-4)
    assert cosine_lr(1e-3, 8.0, 8, 0.5) == pytest.approx(0.0, abs=1e-12)
    # without warmup it starts at the base rate and never goes below 0 past the end
    assert cosine_lr(2e-3, 0.0, 4, 0.0) == 2e-3
    assert cosine_lr(2e-3, 2.0, 4, 0.0) == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert cosine_lr(2e-3, 5.0, 4, 0.0) == pytest.approx(0.0, abs=1e-12)
