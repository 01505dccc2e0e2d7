"""Distilling the teacher as it is used: the boost added to the teacher's logits at each
training position equals the boost serving adds for that position's history."""

from __future__ import annotations

import numpy as np
import torch
from lmrec.transitions import Transitions

from training.distill import Boost

N_ITEMS = 12


def table(rng: np.random.Generator, weight: float = 1.5) -> Transitions:
    dense = rng.integers(0, 4, size=(N_ITEMS + 1, N_ITEMS + 1)).astype(np.float32)
    dense[0] = 0  # padding has no successors
    dense[:, 0] = 0
    rows, cols = np.nonzero(dense)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=N_ITEMS + 2))])
    return Transitions(
        indptr[: N_ITEMS + 2].astype(np.int64), cols.astype(np.int32), dense[rows, cols], weight
    )


def batch(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded sequences (B, L) and their real target positions in the last W columns."""
    items = torch.zeros(4, 9, dtype=torch.long)
    for b, n in enumerate((9, 6, 2, 4)):
        items[b, -n:] = torch.from_numpy(rng.integers(1, N_ITEMS + 1, size=n))
    real = items[:, -7:] != 0
    return items, real


def served_boosts(t: Transitions, items: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    """(N, n_items + 1): what serving adds for each real position's history (its prefix)."""
    width = real.shape[1]
    histories = []
    for b, j in zip(*np.nonzero(real.numpy()), strict=True):
        column = items.shape[1] - width + j
        seq = items[b, : column + 1].numpy()
        histories.append(seq[seq != 0])
    return t.add_to(np.zeros((len(histories), N_ITEMS + 1), np.float32), histories)


def test_the_catalog_boost_is_the_one_serving_adds():
    rng = np.random.default_rng(0)
    t, (items, real) = table(rng), batch(rng)
    logits = torch.randn(int(real.sum()), N_ITEMS)
    boosted = Boost(t).add(logits, items, real)
    want = logits.numpy() + served_boosts(t, items, real)[:, 1:]
    np.testing.assert_allclose(boosted.numpy(), want, rtol=1e-6, atol=1e-6)
    assert not torch.equal(boosted, logits)  # the table does reach these positions


def test_candidate_columns_get_the_same_boost_even_when_a_negative_repeats():
    rng = np.random.default_rng(1)
    t, (items, real) = table(rng), batch(rng)
    n = int(real.sum())
    y = torch.from_numpy(rng.integers(1, N_ITEMS + 1, size=n))
    negatives = torch.tensor([3, 5, 3, 11, 1, 5, 7])  # drawn with replacement
    logits = torch.randn(n, 1 + len(negatives))
    boosted = Boost(t).add(logits, items, real, (y, negatives))
    dense = served_boosts(t, items, real)
    want = logits.numpy() + np.concatenate(
        [dense[np.arange(n), y.numpy()][:, None], dense[:, negatives.numpy()]], axis=1
    )
    np.testing.assert_allclose(boosted.numpy(), want, rtol=1e-6, atol=1e-6)


def test_the_served_student_is_the_distilled_one_unless_plain_is_ahead_beyond_noise():
    from training.dist import DistEnv
    from training.hybrid import paired_choice

    rng = np.random.default_rng(0)
    distilled = rng.uniform(0, 1, 2000) * (rng.uniform(size=2000) < 0.2)
    # a plain student that wins 21 users and loses 19 by the same amount: a tie in noise
    noisy = distilled.copy()
    flip = rng.choice(2000, 40, replace=False)
    noisy[flip[:21]] += 0.3
    noisy[flip[21:]] -= 0.3
    mean, lo, hi = paired_choice(distilled, noisy, DistEnv())
    assert lo < 0 < hi and abs(mean - (noisy - distilled).mean()) < 1e-12
    # one that is ahead on most users: the interval leaves zero behind
    better = np.minimum(distilled + 0.02, 1.0)
    mean, lo, hi = paired_choice(distilled, better, DistEnv())
    assert 0 < lo <= mean <= hi
