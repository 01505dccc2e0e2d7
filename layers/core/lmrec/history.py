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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_WEIGHT = 10_000.0  # above training/repeat_expert.py's grid (4096)
MAX_WINDOW = 10_000


def decayed_counts(
    histories: list[np.ndarray], decay: float, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(history index, item, sum of decay**age over its occurrences) for every distinct item
    of each history's `window` newest items, one entry per (history, item), sorted."""
    tails = [np.asarray(h[::-1][:window], dtype=np.int64) for h in histories]
    if not tails or not sum(len(t) for t in tails):
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float32)
    items = np.concatenate(tails)
    owner = np.repeat(np.arange(len(histories)), [len(t) for t in tails])
    age = np.concatenate([np.arange(len(t)) for t in tails])
    width = int(items.max()) + 1
    keys, where = np.unique(owner * width + items, return_inverse=True)
    sums = np.bincount(where, weights=decay ** age.astype(np.float64), minlength=len(keys))
    return keys // width, keys % width, sums.astype(np.float32)


@dataclass
class HistoryExpert:
    weight: float
    decay: float = 0.9
    window: int = 200

    def boosts(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(history index, item row, boost > 0) for the items of each history."""
        rows, items, sums = decayed_counts(histories, self.decay, self.window)
        return rows, items, (self.weight * np.log1p(sums)).astype(np.float32)

    def add_to(self, scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """scores (B, n_items + 1) plus each row's boosts, in place; returned for chaining."""
        rows, items, boost = self.boosts(histories)
        scores[rows, items] += boost  # one entry per (row, item)
        return scores

    def parameters(self) -> dict:
        """What the manifest records under "history_expert"."""
        return {"weight": self.weight, "decay": self.decay, "window": self.window}


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
    return HistoryExpert(float(weight), float(decay), window)
