"""The teacher's training step: the sampled-softmax loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.config import ModelConfig
from training.model import SASRec


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
