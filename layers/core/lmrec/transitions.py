"""Item-to-item transitions, served beside the student.

A count table C[a, b]: how many users took item b within a few steps after item a. A
history's boost for item b is

    weight * log(1 + sum over its `recent` newest items h of decay**age(h) * C[h, b])

added to the student's score (a product of experts: the model's distribution times
(1 + recent transition counts)**weight). Items without a recorded transition keep the
model's score, so the top-k of the sum lies in the model's own top-k plus the boosted items:
serving scores a few dozen extra rows, never the catalog.

Why a count table beside a Transformer: a factorised model must learn each item's
successors from the few times the item occurs, while counting gets them exactly; on the
synthetic ladder the student plus this boost beats both the teacher alone and
co-occurrence alone (docs/experiments.md). The weight is chosen on valid by the training
job, and 0 means no table ships.

What it holds is aggregate: a pair is kept only when at least `min_users` distinct users
made it (training keeps each (user, item) once, so one user adds at most 1 to a pair), and
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
    cols: np.ndarray  # (pairs,) item rows, 1..n_items (int32 in the file and in memory)
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


def read(path: Path, parameters: dict, n_items: int) -> Transitions:
    """The table, checked against the catalog it claims to describe (TransitionsError)."""
    from safetensors.numpy import load_file

    try:
        arrays = load_file(str(path))
        indptr, cols, counts = arrays["indptr"], arrays["cols"], arrays["counts"]
        weight = float(parameters["weight"])
        recent, decay = int(parameters["recent"]), float(parameters["decay"])
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise TransitionsError(f"{path.name}: unreadable transitions ({exc})") from None
    problem = None
    if len(indptr) != n_items + 2 or indptr.dtype != np.int64:
        problem = f"indptr has {len(indptr)} rows for a catalog of {n_items} items"
    elif indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(cols):
        problem = "indptr is not a CSR offset array over cols"
    elif cols.dtype.kind not in "iu" or counts.dtype.kind != "f":
        problem = "cols must hold integers and counts floats"
    elif len(counts) != len(cols) or (len(cols) and (cols.min() < 1 or cols.max() > n_items)):
        problem = "cols and counts disagree, or an item row is outside the catalog"
    elif not (np.isfinite(counts).all() and (counts > 0).all()):
        problem = "counts must be finite and positive"
    elif not (np.isfinite(weight) and weight > 0 and recent >= 1 and 0 < decay <= 1):
        problem = f"parameters out of range: {parameters}"
    if problem:
        raise TransitionsError(f"{path.name}: {problem}")
    return Transitions(indptr, cols, counts, weight, recent, decay)
