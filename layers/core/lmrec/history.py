"""The user-history expert: repeat consumption, served beside the student.

For a history h (oldest first) the expert's boost for item i is

    weight * log(1 + sum over the positions p of i among the `window` newest items of
                     decay ** age(p))

(age 0 = the newest item; decay 1 = how often, below 1 = how often and how lately), added
to the student's score: a product of experts, the model's distribution times
(1 + decayed own count) ** weight, the form the transition table already takes
(lmrec.transitions). Only the history's own items are boosted, so serving scores at most
`window` extra rows. The weight and decay are chosen on valid by the training job when it
keeps repeats (training/repeat_expert.py); weight 0 (the model alone) is on the grid
(0 ... 4096), and a bundle without the manifest's "history_expert" has none. Nothing is
stored: it reads the history the request already carries.

That form ("decayed") counts age in positions, so at decay 0.5 only the last dozen positions
weigh anything, whatever the weight; in a log of bursts (whom a student writes to next) the
user's tenth most recent contact may be 40 positions back. The "recency" form ranks the
history's distinct items by their last occurrence (rank 0 = the newest) and boosts item b by
weight * log(1 + decay ** rank(b)): at a large weight it orders every history item exactly
as the own_recent baseline does; at decay 1 it is a flat "already taken" lift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_WEIGHT = 10_000.0  # above training/repeat_expert.py's grid (4096)
MAX_WINDOW = 10_000


FORMS = ("decayed", "recency")


def _newest(histories: list[np.ndarray], window: int):
    """Each history's `window` newest items, newest first, concatenated: (age, keys, first,
    where, width) with keys the distinct (history, item) pairs as history * width + item,
    sorted, `first` the index of each pair's newest occurrence and `where` each occurrence's
    pair; None when empty."""
    tails = [np.asarray(h[::-1][:window], dtype=np.int64) for h in histories]
    if not tails or not sum(len(t) for t in tails):
        return None
    items = np.concatenate(tails)
    owner = np.repeat(np.arange(len(histories)), [len(t) for t in tails])
    age = np.concatenate([np.arange(len(t)) for t in tails])
    width = int(items.max()) + 1
    keys, first, where = np.unique(owner * width + items, return_index=True, return_inverse=True)
    return age, keys, first, where, width


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    empty = np.empty(0, np.int64)
    return empty, empty, np.empty(0, np.float32)


def decayed_counts(
    histories: list[np.ndarray], decay: float, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history index, item, sum of decay**age over its occurrences) for every distinct item
    of each history's `window` newest items, one entry per (history, item), sorted."""
    found = _newest(histories, window)
    if found is None:
        return _empty()
    age, keys, _, where, width = found
    sums = np.bincount(where, weights=decay ** age.astype(np.float64), minlength=len(keys))
    return keys // width, keys % width, sums.astype(np.float32)


def recency_values(
    histories: list[np.ndarray], decay: float, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history index, item, decay**rank) for the same entries as decayed_counts, rank being
    the item's place among the history's distinct items by last occurrence (0 = newest)."""
    found = _newest(histories, window)
    if found is None:
        return _empty()
    _, keys, first, _, width = found
    owner = keys // width
    order = np.lexsort((first, owner))  # by history, then newest occurrence first
    per_owner = np.bincount(owner, minlength=len(histories))
    starts = np.repeat(np.cumsum(per_owner) - per_owner, per_owner)
    rank = np.empty(len(keys), np.int64)
    rank[order] = np.arange(len(keys)) - starts
    return owner, keys % width, (decay ** rank.astype(np.float64)).astype(np.float32)


@dataclass
class HistoryExpert:
    weight: float
    decay: float = 0.9
    window: int = 200
    form: str = "decayed"  # FORMS (module docstring)

    def boosts(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(history index, item row, boost > 0) for the items of each history."""
        values = recency_values if self.form == "recency" else decayed_counts
        rows, items, sums = values(histories, self.decay, self.window)
        return rows, items, (self.weight * np.log1p(sums)).astype(np.float32)

    def add_to(self, scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """scores (B, n_items + 1) plus each row's boosts, in place; returned for chaining."""
        rows, items, boost = self.boosts(histories)
        scores[rows, items] += boost  # one entry per (row, item)
        return scores

    def parameters(self) -> dict:
        """What the manifest records under "history_expert"."""
        out = {"weight": self.weight, "decay": self.decay, "window": self.window}
        # "decayed" is left out: a bundle from before the key reads the same
        return out | ({"form": self.form} if self.form != "decayed" else {})


def read(parameters: object) -> HistoryExpert:
    """The expert a manifest describes; ValueError naming what is wrong."""
    if not isinstance(parameters, dict):
        raise ValueError(f"history_expert must be an object, not {type(parameters).__name__}")
    weight, decay, window = (parameters.get(k) for k in ("weight", "decay", "window"))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (weight, decay))
    whole = isinstance(window, int) and not isinstance(window, bool)
    if not (numbers and whole):
        raise ValueError("history_expert needs numbers weight, decay and an integer window")
    assert isinstance(weight, int | float) and isinstance(decay, int | float)  # for mypy
    assert isinstance(window, int)
    if not (0 < weight <= MAX_WEIGHT and 0 < decay <= 1 and 1 <= window <= MAX_WINDOW):
        raise ValueError(
            f"history_expert out of range: 0 < weight <= {MAX_WEIGHT:g}, 0 < decay <= 1, "
            f"1 <= window <= {MAX_WINDOW}"
        )
    form = parameters.get("form", "decayed")
    if form not in FORMS:
        raise ValueError(f"history_expert form must be one of {', '.join(FORMS)}, not {form!r}")
    return HistoryExpert(float(weight), float(decay), window, form)
