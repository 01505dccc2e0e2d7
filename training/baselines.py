"""Non-neural baselines, always evaluated beside the teacher in the same protocol.

- popularity: items ranked by how often they occur in the training data.
- recent_popularity: popularity over the training data's latest window, a decayed count
  (each row weighs 0.5 ** (age / half_life), age measured back from the newest training
  row; half_life: the span of the newest tenth of the training rows).
- own_frequent / own_recent (repeats kept): the user's own items by how often / how lately
  they took them, the rest after them by popularity.
- cooccurrence: item-to-item transitions. C[a, b] counts how often b follows a within
  `window` steps in a training sequence; a user's score for b sums C[h, b] over the
  `recent` newest history items h, weighted by recency. Popularity breaks ties, so a user
  whose items have no recorded transitions gets the popular list rather than noise.
- content_tfidf (the catalog read, training.item_content): the content-only baseline of new
  items. Each item is its hashed features (the model's own featuriser), idf-weighted and L2
  normalised; a user's score for an item is the cosine-like product of the item with the sum
  of the history's item vectors. It knows an item by its text alone, as a new item is known.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from lmrec import content
from lmrec.transitions import recent_sums

from training.split import Split


class Popularity:
    name = "popularity"

    def __init__(self, split: Split):
        self.counts = split.item_counts().astype(np.float32)  # (n_items + 1,)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts)))

    @property
    def same_for_all(self) -> np.ndarray:
        """Every user's scores (training.evaluate.SameScores ranks them without a row each)."""
        return self.counts


def pair_counts(split: Split, window: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse C[a, b] (CSR over source items a, shape (n_items + 1) x (n_items + 1)): how many
    users had b follow a within `window` training steps. Never an n_items x n_items or
    users x items array. Returns (indptr, cols, counts)."""
    data = split.data
    n_cols = data.n_items + 1
    owner = np.repeat(np.arange(data.n_users), data.lengths())
    train = split.train_mask()
    parts: list[np.ndarray] = []
    users: list[np.ndarray] = []
    for gap in range(1, window + 1):  # pairs (a, b): b follows a by `gap` training steps
        pair = np.flatnonzero(train[gap:] & (owner[gap:] == owner[:-gap]))
        parts.append(data.items[pair] * n_cols + data.items[pair + gap])
        users.append(owner[pair])
    # Each user counts once per pair: with repeats kept one user can make a pair many times,
    # and the table counts users (a shipped pair is never one user's, lmrec.transitions).
    code, user = np.concatenate(parts), np.concatenate(users)
    order = np.lexsort((user, code))
    code, user = code[order], user[order]
    first = np.ones(len(code), dtype=bool)
    first[1:] = (code[1:] != code[:-1]) | (user[1:] != user[:-1])
    codes, counts = np.unique(code[first], return_counts=True)  # by (src, dst)
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


RECENT_SHARE = 0.10  # the half-life: the span of the newest 10% of the rows


def recent_counts(
    ts: np.ndarray, items: np.ndarray, n_items: int, recent_share: float = RECENT_SHARE
) -> tuple[np.ndarray, float]:
    """((n_items + 1,) float32 counts, half-life): each row weighs 0.5 ** (age / half-life),
    age from the newest row, the half-life being the span of the newest `recent_share` of the
    rows. The recent_popularity baseline on training rows; the bundle's trending prior on all."""
    newest = float(ts.max()) if len(ts) else 0.0
    span = newest - float(np.quantile(ts, 1.0 - recent_share)) if len(ts) else 0.0
    half_life = max(span, 1e-9)
    weight = 0.5 ** ((newest - ts) / half_life)
    counts = np.bincount(items, weights=weight, minlength=n_items + 1)
    return counts.astype(np.float32), half_life


class RecentPopularity:
    """Popularity now: training rows decayed by age (module docstring). Under the time split
    the newest training row is the last one before the cut."""

    name = "recent_popularity"

    def __init__(self, split: Split, recent_share: float = RECENT_SHARE):
        train = split.train_mask()
        ts, items = split.data.timestamps[train], split.data.items[train]
        self.counts, self.half_life = recent_counts(ts, items, split.data.n_items, recent_share)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts)))

    @property
    def same_for_all(self) -> np.ndarray:
        return self.counts


class _Own:
    """The user's own items first, scored by `_own` (>= 1), the rest by popularity (< 1)."""

    name = ""

    def __init__(self, split: Split):
        pop = Popularity(split).counts
        self.fallback = pop / (pop.max() + 1.0)  # in [0, 1)

    def _own(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        scores = np.tile(self.fallback, (len(histories), 1))
        for row, history in enumerate(histories):
            if len(history):
                items, value = self._own(history)
                scores[row, items] += value
        return scores


class OwnFrequent(_Own):
    """The user's most frequent items; ties by how recently they were taken."""

    name = "own_frequent"

    def _own(self, history):
        items, counts = np.unique(history, return_counts=True)
        last = _last_positions(history, items)
        return items, counts + last / (len(history) + 1.0)


class OwnRecent(_Own):
    """The user's items by how recently they were last taken."""

    name = "own_recent"

    def _own(self, history):
        items = np.unique(history)
        return items, 1.0 + _last_positions(history, items)


def _last_positions(history: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(len(items),) the last position (0 = oldest) of each of `items` (sorted) in history."""
    reversed_first = np.unique(history[::-1], return_index=True)[1]  # sorted like items
    return (len(history) - 1 - reversed_first).astype(np.float64)


def tfidf(features: content.Features, n_buckets: int) -> sp.csr_matrix:
    """(rows, n_buckets): the features idf-weighted, each row L2 normalised (an empty row,
    such as padding's, stays empty)."""
    n = len(features)
    m = sp.csr_matrix(
        (features.weights.astype(np.float64), features.indices, features.offsets),
        shape=(n, n_buckets),
    )
    m.sum_duplicates()
    df = np.bincount(m.indices, minlength=n_buckets)
    idf = np.log((n + 1) / (df + 1)) + 1.0
    m = m @ sp.diags(idf)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m)


# The catalog up to which content_tfidf is scored in the job: a profile's product with the
# catalog touches every item that shares a feature with the history (a common word: most of
# them), so its cost grows with users x items beyond this.
TFIDF_MAX_ITEMS = 100_000


class ContentTfidf:
    """Module docstring. Needs the data's item content (Interactions.content)."""

    name = "content_tfidf"

    def __init__(self, split: Split):
        c = split.data.content
        if c is None:
            raise ValueError("content_tfidf needs the item catalog's content")
        self.items = tfidf(c.features, c.spec.n_buckets)  # (n_items + 1, buckets)
        self.items_t = sp.csr_matrix(self.items.T)  # ties (no shared feature) stay ties

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        lengths = [len(h) for h in histories]
        profile = sp.csr_matrix(
            (np.ones(sum(lengths)), np.concatenate(histories), np.cumsum([0, *lengths])),
            shape=(len(histories), self.items.shape[0]),
        )
        return ((profile @ self.items) @ self.items_t).toarray().astype(np.float32)
