"""count_targets: the teacher's target spread toward what followed the input item in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import write_csv
from training.config import ConfigError, DataConfig, ModelConfig, from_hyperparameters
from training.count_targets import successors
from training.data import load_interactions
from training.model import SASRec
from training.split import leave_one_out


def chain_split(tmp_path):
    """Every user walks a -> b -> c; users 0-2 then d, the rest e; each user's last two items
    are valid and test, so only a -> b -> c and nothing after c is training."""
    rows = []
    for u in range(6):
        walk = ["a", "b", "c", "d" if u < 3 else "e", "f", "g"]
        rows += [[f"u{u}", it, t] for t, it in enumerate(walk)]
    path = write_csv(tmp_path / "c.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    return data, leave_one_out(data)


def test_successors_count_training_pairs_by_users_heaviest_first(tmp_path):
    data, split = chain_split(tmp_path)
    idx = {name: 1 + list(data.item_ids).index(name) for name in "abcdefg"}
    items, weights = successors(split, width=2, window=3)
    assert items.shape == weights.shape == (data.n_items + 1, 2)
    # a is followed within 3 steps by b, c (6 users each) and d (3) / e (3): two kept, b and c
    assert sorted(items[idx["a"]].tolist()) == sorted([idx["b"], idx["c"]])
    assert weights[idx["a"]].tolist() == pytest.approx([0.5, 0.5])
    # c -> d (3 users) and c -> e (3 users); f and g are valid and test targets: never counted
    assert sorted(items[idx["c"]].tolist()) == sorted([idx["d"], idx["e"]])
    seen_after = {int(i) for row in items.tolist() for i in row}
    assert idx["f"] not in seen_after and idx["g"] not in seen_after
    # an item no training pair starts from: an empty row (padding, weight 0)
    assert items[idx["g"]].tolist() == [0, 0] and weights[idx["g"]].sum() == 0
    assert weights.sum(1).max() <= 1 + 1e-6


def _model_and_batch():
    torch.manual_seed(0)
    m = SASRec(ModelConfig(n_items=30, d_model=16, n_blocks=1, max_len=6)).eval()
    items = torch.randint(1, 31, (5, 6))
    targets = torch.randint(1, 31, (5, 6))
    targets[0, :2] = 0
    nxt = torch.randint(0, 31, (31, 4))
    w = torch.rand(31, 4) * (nxt > 0)
    w[7] = 0  # item 7 starts no pair
    w = w / w.sum(1, keepdim=True).clamp(min=1e-9)
    return m, items, targets, nxt, w


@torch.no_grad()
def test_full_softmax_trains_toward_the_mixed_distribution():
    m, items, targets, nxt, w = _model_and_batch()
    plain = m(items, targets)
    m.set_soft_targets(nxt, w, 0.0)
    assert torch.equal(m(items, targets), plain)  # share 0: the plain loss, bit for bit
    m.set_soft_targets(nxt, w, 0.3)
    real = targets != 0
    logp = F.log_softmax(m.catalog_logits(m.encode(items)[real]).float(), 1)
    y, src = targets[real], items[real]
    want = torch.zeros_like(logp)
    for n in range(len(y)):
        has = float(w[src[n]].sum()) > 0
        want[n, y[n] - 1] += 0.7 if has else 1.0
        for j, wj in zip(nxt[src[n]].tolist(), w[src[n]].tolist(), strict=True):
            if j and has:
                want[n, j - 1] += 0.3 * wj
    assert torch.allclose(want.sum(1), torch.ones(len(y)))
    assert float(m(items, targets)) == pytest.approx(float(-(want * logp).sum(1).mean()), rel=1e-5)


@torch.no_grad()
def test_sampled_softmax_scores_each_positive_against_the_same_negatives():
    m, items, targets, nxt, w = _model_and_batch()
    negatives = torch.randint(1, 31, (12,))
    log_q = torch.log(torch.full((31,), 1 / 30))
    plain = m(items, targets, negatives, log_q)
    m.set_soft_targets(nxt, w, 0.0)
    assert torch.equal(m(items, targets, negatives, log_q), plain)
    m.set_soft_targets(nxt, w, 0.4)
    real = targets != 0
    h = m.encode(items)[real]
    table = m.item_table()
    y, src = targets[real], items[real]

    def nll(n: int, pos: int) -> float:
        negs = [i for i in negatives.tolist() if i != int(y[n])]  # accidental hits of the target
        logits = h[n] @ table[[pos, *negs]].T - log_q[[pos, *negs]]
        return float(torch.logsumexp(logits, 0) - logits[0])

    want = []
    for n in range(len(y)):
        ws = w[src[n]] * 0.4
        soft = sum(
            float(wj) * nll(n, j) for j, wj in zip(nxt[src[n]].tolist(), ws, strict=False) if j
        )
        want.append((1 - float(ws.sum())) * nll(n, int(y[n])) + soft)
    assert float(m(items, targets, negatives, log_q)) == pytest.approx(np.mean(want), rel=1e-4)


def test_soft_targets_are_not_part_of_the_model_state():
    m, _items, _targets, nxt, w = _model_and_batch()
    keys = set(m.state_dict())
    m.set_soft_targets(nxt, w, 0.3)
    assert set(m.state_dict()) == keys


@pytest.mark.parametrize("bad", ["-0.1", "1", "1.5", "nan", "x"])
def test_count_targets_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ConfigError, match="count_targets"):
        from_hyperparameters({"count_targets": bad})
