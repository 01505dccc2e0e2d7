"""Non-neural baselines, always evaluated beside the teacher in the same protocol.

- popularity: items ranked by how often they occur in the training data.
- cooccurrence: item-to-item transitions. C[a, b] counts how often b follows a within
  `window` steps in a training sequence; a user's score for b sums C[h, b] over the
  `recent` newest history items h, weighted by recency. Popularity breaks ties, so a user
  whose items have no recorded transitions gets the popular list rather than noise.
"""

from __future__ import annotations

import numpy as np
from lmrec.transitions import recent_sums

from training.split import Split


class Popularity:
    name = "popularity"

    def __init__(self, split: Split):
        self.counts = split.item_counts().astype(np.float32)  # (n_items + 1,)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts)))


def pair_counts(split: Split, window: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse C[a, b] (CSR over source items a, shape (n_items + 1) x (n_items + 1)): how often
    b follows a within `window` training steps of one user. Never an n_items x n_items or
    users x items array. Returns (indptr, cols, counts)."""
    data = split.data
    n_cols = data.n_items + 1
    owner = np.repeat(np.arange(data.n_users), data.lengths())
    train = split.train_mask()
    parts: list[np.ndarray] = []
    for gap in range(1, window + 1):  # pairs (a, b): b follows a by `gap` training steps
        pair = np.flatnonzero(train[gap:] & (owner[gap:] == owner[:-gap]))
        parts.append(data.items[pair] * n_cols + data.items[pair + gap])
    codes, counts = np.unique(np.concatenate(parts), return_counts=True)  # by (src, dst)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(codes // n_cols, minlength=n_cols))])
    return indptr, codes % n_cols, counts.astype(np.float32)


class CoOccurrence:
    name = "cooccurrence"

    def __init__(self, split: Split, window: int = 3, recent: int = 5, decay: float = 0.7):
        self.recent, self.decay = recent, decay
        self.indptr, self.cols, self.vals = pair_counts(split, window)
        pop = Popularity(split).counts
        self.tiebreak = pop / (pop.max() + 1.0) * 1e-3  # < any co-occurrence weight

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        rows, items, sums = recent_sums(
            self.indptr, self.cols, self.vals, histories, self.recent, self.decay
        )
        scores = np.tile(self.tiebreak, (len(histories), 1))
        scores[rows, items] += sums
        return scores
