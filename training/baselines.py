"""Non-neural baselines, always evaluated beside the teacher in the same protocol.

- popularity: items ranked by how often they occur in the training data.
- cooccurrence: item-to-item transitions. C[a, b] counts how often b follows a within
  `window` steps in a training sequence; a user's score for b sums C[h, b] over the
  `recent` newest history items h, weighted by recency. Popularity breaks ties, so a user
  whose items have no recorded transitions gets the popular list rather than noise.
"""

from __future__ import annotations

import numpy as np

from training.split import Split


class Popularity:
    name = "popularity"

    def __init__(self, split: Split):
        self.counts = split.item_counts().astype(np.float32)  # (n_items + 1,)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts)))


class CoOccurrence:
    name = "cooccurrence"

    def __init__(self, split: Split, window: int = 3, recent: int = 5, decay: float = 0.7):
        n = split.data.n_items
        self.n_cols = n + 1
        self.recent, self.decay = recent, decay
        data = split.data
        owner = np.repeat(np.arange(data.n_users), data.lengths())
        train = split.train_mask()
        parts: list[np.ndarray] = []
        for gap in range(1, window + 1):  # pairs (a, b): b follows a by `gap` training steps
            pair = np.flatnonzero(train[gap:] & (owner[gap:] == owner[:-gap]))
            parts.append(data.items[pair] * self.n_cols + data.items[pair + gap])
        # Sparse counts (CSR); never an n_items x n_items or users x items array.
        codes, counts = np.unique(np.concatenate(parts), return_counts=True)  # by (src, dst)
        rows = codes // self.n_cols
        # CSR over source items: row a's neighbours are cols[indptr[a]:indptr[a+1]].
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.n_cols))])
        self.cols = codes % self.n_cols
        self.vals = counts.astype(np.float32)
        pop = Popularity(split).counts
        self.tiebreak = pop / (pop.max() + 1.0) * 1e-3  # < any co-occurrence weight

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        out_rows, out_cols, out_vals = [], [], []
        for row, hist in enumerate(histories):
            for age, item in enumerate(hist[::-1][: self.recent]):
                lo, hi = self.indptr[item], self.indptr[item + 1]
                out_cols.append(self.cols[lo:hi])
                out_vals.append(self.vals[lo:hi] * self.decay**age)
                out_rows.append(np.full(hi - lo, row))
        scores = np.tile(self.tiebreak, (len(histories), 1))
        if out_cols:
            flat = np.concatenate(out_rows) * self.n_cols + np.concatenate(out_cols)
            scores += (
                np.bincount(flat, weights=np.concatenate(out_vals), minlength=scores.size)
                .reshape(scores.shape)
                .astype(np.float32)
            )
        return scores
