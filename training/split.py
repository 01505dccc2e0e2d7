"""Evaluation splits: leave-one-out by time (the default) and a global time split.

loo, the protocol of the SASRec / BERT4Rec literature: for a user with history s (oldest
first) and len(s) >= 3, the model trains on s[:-2], validation asks for s[-2] given s[:-2],
and test asks for s[-1] given s[:-1]. Users with fewer than 3 interactions only contribute
training data (as in SASRec's code). Its known leak: a user's training rows may come after
another user's test item, which production (train on the past, serve the future) never sees.

time: one cut-off for everyone, the timestamp that leaves TIME_SPLIT_AFTER of the
interactions at or after it. Training is every interaction before the cut; valid asks for
a user's first interaction at or after the cut given everything before it, test for the next
one given that history plus the valid item (as the user store serves it). Evaluated: the
users with at least one interaction before the cut and two after it; users new after the
cut are a cold start, not evaluated here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from training.data import Interactions


@dataclass
class EvalSet:
    users: np.ndarray  # (U,) internal user ids that are evaluated
    prefix_len: np.ndarray  # (U,) the history given to the model is sequence[:prefix_len]
    targets: np.ndarray  # (U,) the held-out item

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Split:
    data: Interactions
    train_len: np.ndarray  # (n_users,) how many leading items of each sequence are training data
    valid: EvalSet
    test: EvalSet
    has_ties: np.ndarray  # (n_users,) bool: two training interactions share a timestamp
    # Rows of valid/test that are evaluated (a fixed seeded sample on large data); None = all.
    eval_rows: np.ndarray | None = None
    name: str = "loo"  # "loo" or "time"
    cut: float | None = None  # time: the cut-off timestamp
    # Seen items are ranked out in evaluation (repeats dropped: serving excludes them); with
    # repeats kept a target may be an item of the history, and it is ranked like any other.
    exclude_seen: bool = True

    def describe(self) -> dict:
        """What the report and the manifest record about the split."""
        out: dict = {"name": self.name, "exclude_seen": self.exclude_seen}
        if self.cut is not None:
            out["cut"] = self.cut
        return out

    def evalset(self, name: str) -> EvalSet:
        """The evaluated part of "valid" or "test"."""
        full: EvalSet = getattr(self, name)
        if self.eval_rows is None:
            return full
        r = self.eval_rows
        return EvalSet(full.users[r], full.prefix_len[r], full.targets[r])

    def sample_eval_users(self, limit: int, seed: int) -> None:
        """Evaluate a fixed seeded sample of `limit` users when there are more (0 = all).
        Valid and test share it, so their figures are about the same people."""
        n = len(self.test)
        if limit and n > limit:
            rng = np.random.default_rng(seed)
            self.eval_rows = np.sort(rng.choice(n, size=limit, replace=False))

    def train_sequence(self, user: int) -> np.ndarray:
        start = self.data.offsets[user]
        return self.data.items[start : start + self.train_len[user]]

    def train_window(
        self, user: int, end: int, width: int, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Training items [end - width - 1, end) of the user's sequence (up to `width` inputs
        and their next-item targets).

        With `rng`, interactions inside the window that share a timestamp are put in a random
        order. Logs such as MovieLens record half of all consecutive ratings in the same
        second, so their order inside a tie is an artefact of the file; training on a fresh
        order each epoch keeps the model from learning it.
        """
        start = self.data.offsets[user]
        lo, hi = start + max(0, end - width - 1), start + end
        seq = self.data.items[lo:hi]
        if rng is None or not self.has_ties[user]:
            return seq
        return seq[np.lexsort((rng.random(len(seq)), self.data.timestamps[lo:hi]))]

    def with_valid_in_train(self) -> Split:
        """The same split with each evaluated user's valid item moved into training (for a
        refit after model selection); test is unchanged and still unseen."""
        train_len = self.train_len.copy()
        train_len[self.valid.users] += 1
        return dataclasses.replace(self, train_len=train_len, has_ties=_ties(self.data, train_len))

    def train_mask(self) -> np.ndarray:
        """(n_interactions,) bool: the interaction is training data."""
        lengths = self.data.lengths()
        pos_in_user = np.arange(len(self.data.items)) - np.repeat(self.data.offsets[:-1], lengths)
        return pos_in_user < np.repeat(self.train_len, lengths)

    def item_counts(self) -> np.ndarray:
        """(n_items + 1,) int64: training occurrences per item (column 0, padding, is 0)."""
        items = self.data.items[self.train_mask()]
        return np.bincount(items, minlength=self.data.n_items + 1)

    def history(self, user: int, length: int) -> np.ndarray:
        start = self.data.offsets[user]
        return self.data.items[start : start + length]


def leave_one_out(data: Interactions) -> Split:
    lengths = data.lengths()
    evaluated = np.flatnonzero(lengths >= 3)
    train_len = np.where(lengths >= 3, lengths - 2, lengths)
    ends = data.offsets[1:]
    valid = EvalSet(evaluated, lengths[evaluated] - 2, data.items[ends[evaluated] - 2])
    test = EvalSet(evaluated, lengths[evaluated] - 1, data.items[ends[evaluated] - 1])
    return Split(
        data=data, train_len=train_len, valid=valid, test=test, has_ties=_ties(data, train_len)
    )


TIME_SPLIT_AFTER = 0.10  # share of the interactions at or after the time split's cut-off


def time_split(data: Interactions, after: float = TIME_SPLIT_AFTER) -> Split:
    """The global time split (module docstring); rows per user are sorted by time, so a
    user's training rows are a leading run of their sequence."""
    cut = float(np.quantile(data.timestamps, 1.0 - after, method="higher"))
    lengths = data.lengths()
    owner = np.repeat(np.arange(data.n_users), lengths)
    train_len = np.bincount(owner[data.timestamps < cut], minlength=data.n_users)
    evaluated = np.flatnonzero((train_len >= 1) & (lengths - train_len >= 2))
    first = data.offsets[evaluated] + train_len[evaluated]
    valid = EvalSet(evaluated, train_len[evaluated], data.items[first])
    test = EvalSet(evaluated, train_len[evaluated] + 1, data.items[first + 1])
    return Split(
        data=data,
        train_len=train_len,
        valid=valid,
        test=test,
        has_ties=_ties(data, train_len),
        name="time",
        cut=cut,
    )


def make_split(data: Interactions, name: str, exclude_seen: bool = True) -> Split:
    """The split the `split` hyperparameter names; exclude_seen as repeats were chosen."""
    split = time_split(data) if name == "time" else leave_one_out(data)
    split.exclude_seen = exclude_seen
    return split


def _ties(data: Interactions, train_len: np.ndarray) -> np.ndarray:
    """(n_users,) bool: two of the user's training interactions share a timestamp."""
    same = np.diff(data.timestamps) == 0
    same &= np.diff(np.repeat(np.arange(data.n_users), data.lengths())) == 0  # same user
    pos_in_user = np.arange(len(data.items)) - np.repeat(data.offsets[:-1], data.lengths())
    # a tie counts if both of its interactions are training data
    in_train = pos_in_user[1:] < np.repeat(train_len, data.lengths())[1:]
    tie_user = np.repeat(np.arange(data.n_users), data.lengths())[1:][same & in_train]
    has_ties = np.zeros(data.n_users, dtype=bool)
    has_ties[tie_user] = True
    return has_ties
