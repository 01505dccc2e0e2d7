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
    # the shared negatives hold copies of targets and of soft targets (accidental hits)
    nxt[items[2, 4]] = torch.tensor([targets[2, 4], 0, 5, 9])
    w[items[2, 4]] = torch.tensor([0.5, 0.0, 0.3, 0.2])
    negatives = torch.cat([torch.randint(1, 31, (12,)), torch.tensor([5, 5, 9, 0 + targets[2, 4]])])
    negatives = negatives[negatives > 0]
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
        """As the only target: its own draws among the negatives left out, nothing else."""
        negs = [i for i in negatives.tolist() if i != pos]
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


@torch.no_grad()
def test_soft_targets_follow_the_clean_inputs_under_input_noise():
    m, items, targets, nxt, w = _model_and_batch()
    m.set_soft_targets(nxt, w, 0.3)
    noisy = items.clone()
    noisy[:, ::2] = 1 + (noisy[:, ::2] % 30)  # what input_noise does to some inputs
    with_clean = m(noisy, targets, clean=items)
    m.set_soft_targets(None, None, 0.0)
    plain_noisy = m(noisy, targets)
    m.set_soft_targets(nxt, w, 0.3)
    assert float(with_clean) != pytest.approx(float(m(noisy, targets)))  # read the clean ones
    real = targets != 0
    logp = F.log_softmax(m.catalog_logits(m.encode(noisy)[real]).float(), 1)
    src, y = items[real], targets[real]
    ws = w[src] * 0.3
    nll = -logp.gather(1, (y - 1)[:, None])[:, 0]
    soft = -(ws * logp.gather(1, (nxt[src] - 1).clamp(min=0))).sum(1)
    want = ((1 - ws.sum(1)) * nll + soft).mean()
    assert float(with_clean) == pytest.approx(float(want), rel=1e-5)
    assert float(plain_noisy) == pytest.approx(float(nll.mean()), rel=1e-5)


def test_equal_counts_keep_the_more_popular_successor(tmp_path):
    """One user each goes a -> x, a -> y, a -> z (then a valid and a test item); z is the
    most popular item in training, then y: with room for two, z and y are kept, whatever
    their ids."""
    rows = []
    for u, nxt in enumerate("xyz"):
        rows += [[f"u{u}", "a", 0], [f"u{u}", nxt, 1], [f"u{u}", "v", 2], [f"u{u}", "t", 3]]
    for p, item in enumerate("zzzzyy"):
        rows += [[f"p{p}", item, 0], [f"p{p}", "v", 1], [f"p{p}", "t", 2]]
    path = write_csv(tmp_path / "t.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    idx = {name: 1 + list(data.item_ids).index(name) for name in "axyz"}
    items, weights = successors(leave_one_out(data), width=2, window=1)
    assert items[idx["a"]].tolist() == [idx["z"], idx["y"]]
    assert weights[idx["a"]].tolist() == pytest.approx([0.5, 0.5])


def test_soft_targets_are_not_part_of_the_model_state():
    m, _items, _targets, nxt, w = _model_and_batch()
    keys = set(m.state_dict())
    m.set_soft_targets(nxt, w, 0.3)
    assert set(m.state_dict()) == keys


@pytest.mark.parametrize("bad", ["-0.1", "1", "1.5", "nan", "x"])
def test_count_targets_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ConfigError, match="count_targets"):
        from_hyperparameters({"count_targets": bad})
