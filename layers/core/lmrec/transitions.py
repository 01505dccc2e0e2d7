"""Item-to-item transitions, served beside the student.

A count table C[a, b]: how many users took item b within a few steps after item a. A
history's boost for item b is

    weight * log(1 + sum over its `recent` newest items h of decay**age(h) * C[h, b])

added to the student's score (a product of experts: the model's distribution times
(1 + recent transition counts)**weight). Items without a recorded transition keep the
model's score, so the top-k of the sum lies in the model's own top-k plus the boosted items:
serving scores at most recent x per_item extra rows (250 with the job's defaults, usually a
few dozen), never the catalog.

Why a count table beside a Transformer: a factorised model must learn each item's
successors from the few times the item occurs, while counting gets them exactly; on the
synthetic ladder the teacher plus this boost is ahead of co-occurrence at every rung where
the teacher alone trails it, and the student plus the boost is ahead of the teacher alone
(docs/experiments.md). The weight is chosen on valid by the training
job, and 0 means no table ships.

What it holds is aggregate: a pair is kept only when at least `min_users` distinct users
made it (training counts each user once per pair, repeats kept or not), and
at most `per_item` successors per item. No user id, no history. Erasing a user's rows and
retraining (the deletion job runs before every training) removes their part of the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "transitions.safetensors"


class TransitionsError(ValueError):
    """A transitions file that does not describe a count table over this catalog."""


def recent_sums(
    indptr: np.ndarray,
    cols: np.ndarray,
    counts: np.ndarray,
    histories: list[np.ndarray],
    recent: int,
    decay: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history index, item, sum of decay**age * count) for every item some history's
    `recent` newest items lead to; one entry per (history, item). Vectorised over the batch:
    no Python loop per row of the table."""
    tails = [np.asarray(h[::-1][:recent], dtype=np.int64) for h in histories]
    src = np.concatenate(tails) if tails else np.empty(0, np.int64)
    owner = np.repeat(np.arange(len(histories)), [len(t) for t in tails])
    age = np.concatenate([np.arange(len(t)) for t in tails]) if tails else src
    lo, hi = indptr[src], indptr[src + 1]
    n = hi - lo
    if not n.sum():
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float32)
    # Positions lo..hi-1 of every source row, concatenated, without a loop per row.
    start = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    at = start + np.arange(int(n.sum()))
    # float32 products summed in float64, as the co-occurrence baseline always has
    weight = np.repeat((decay ** age.astype(np.float64)).astype(np.float32), n) * counts[at]
    code = np.repeat(owner, n) * (len(indptr) - 1) + cols[at]
    keys, where = np.unique(code, return_inverse=True)
    sums = np.bincount(where, weights=weight, minlength=len(keys))
    return keys // (len(indptr) - 1), keys % (len(indptr) - 1), sums.astype(np.float32)


@dataclass
class Transitions:
    indptr: np.ndarray  # (n_items + 2,) int64: row a's successors are cols[indptr[a]:indptr[a+1]]
    cols: np.ndarray  # (pairs,) int32 item rows, 1..n_items
    counts: np.ndarray  # (pairs,) float32 users per pair
    weight: float
    recent: int = 5
    decay: float = 0.7

    @property
    def n_items(self) -> int:
        return len(self.indptr) - 2

    def boosts(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(history index, item row, boost > 0) for the items these histories lead to."""
        rows, items, sums = recent_sums(
            self.indptr, self.cols, self.counts, histories, self.recent, self.decay
        )
        return rows, items, (self.weight * np.log1p(sums)).astype(np.float32)

    def add_to(self, scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """scores (B, n_items + 1) plus each row's boosts, in place; returned for chaining."""
        rows, items, boost = self.boosts(histories)
        scores[rows, items] += boost  # one entry per (row, item): no repeated index
        return scores

    def parameters(self) -> dict:
        """What the manifest records beside the file."""
        return {"weight": self.weight, "recent": self.recent, "decay": self.decay}


def write(path: Path, t: Transitions) -> None:
    from safetensors.numpy import save_file

    save_file(
        {
            "indptr": t.indptr.astype(np.int64),
            "cols": t.cols.astype(np.int32),
            "counts": t.counts.astype(np.float32),
        },
        str(path),
    )


# Bounds that keep every boost finite and a request's cost small: the job's weights are at
# most 8, its counts are numbers of users, and `recent` items at most this many.
MAX_WEIGHT = 1_000.0
MAX_COUNT = 1e9
MAX_RECENT = 1_000


def _parameters(parameters: object) -> tuple[float, int, float] | None:
    """(weight, recent, decay) when they are JSON numbers in range, else None."""
    if not isinstance(parameters, dict):
        return None
    weight, recent, decay = (parameters.get(k) for k in ("weight", "recent", "decay"))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (weight, decay))
    if not (numbers and isinstance(recent, int) and not isinstance(recent, bool)):
        return None
    assert isinstance(weight, int | float) and isinstance(decay, int | float)  # for mypy
    if 0 < weight <= MAX_WEIGHT and 1 <= recent <= MAX_RECENT and 0 < decay <= 1:
        return float(weight), recent, float(decay)
    return None


def _problem(indptr: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_items: int) -> str | None:
    if any(a.ndim != 1 for a in (indptr, cols, counts)):
        return "indptr, cols and counts must be one-dimensional"
    if indptr.dtype != np.int64 or cols.dtype not in (np.int32, np.int64):
        return "indptr must be int64 and cols int32 or int64"
    if counts.dtype not in (np.float32, np.float64):
        return "counts must be float32 or float64"
    if len(indptr) != n_items + 2:
        return f"indptr has {len(indptr)} offsets for a catalog of {n_items} items"
    if indptr[0] != 0 or indptr[1] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(cols):
        return "indptr is not a CSR offset array over cols (row 0, padding, must be empty)"
    if len(counts) != len(cols) or (len(cols) and (cols.min() < 1 or cols.max() > n_items)):
        return "cols and counts disagree, or an item row is outside the catalog"
    if not (np.isfinite(counts).all() and (counts > 0).all() and (counts <= MAX_COUNT).all()):
        return f"counts must be finite, positive and at most {MAX_COUNT:g}"
    return None


def read(path: Path, parameters: object, n_items: int) -> Transitions:
    """The table, checked against the catalog it claims to describe (TransitionsError): a
    table that loads is one no request can fail on."""
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
        indptr, cols, counts = arrays["indptr"], arrays["cols"], arrays["counts"]
    except (KeyError, ValueError, OSError) as exc:
        raise TransitionsError(f"{path.name}: unreadable transitions ({exc})") from None
    chosen = _parameters(parameters)
    problem = _problem(indptr, cols, counts, n_items)
    if chosen is None:
        problem = (
            f"parameters must be numbers with 0 < weight <= {MAX_WEIGHT:g}, "
            f"an integer 1 <= recent <= {MAX_RECENT} and 0 < decay <= 1: {parameters!r}"[:300]
        )
    if problem or chosen is None:
        raise TransitionsError(f"{path.name}: {problem}")
    weight, recent, decay = chosen
    return Transitions(indptr, cols, counts.astype(np.float32), weight, recent, decay)
