"""Evaluation splits: leave-one-out by time (the default) and a global time split.

loo, the protocol of the SASRec / BERT4Rec literature: for a user with history s (oldest
first) and len(s) >= 3, the model trains on s[:-2], validation asks for s[-2] given s[:-2],
and test asks for s[-1] given s[:-1]. Users with fewer than 3 interactions only contribute
training data (as in SASRec's code). Its known leak: a user's training rows may come after
another user's test item, which production (train on the past, serve the future) never sees.

time: one rule, R(c), applied at two cut-offs c_v < c_t taken from the data (c_t leaves
TIME_TEST_AFTER of the interactions at or after it, c_v TIME_VALID_AFTER). R(c) asks for a
user's first interaction at or after c given everything they did before c. Valid = R(c_v)
for the users with an interaction before c_v and one in [c_v, c_t); test = R(c_t) for the
users with an interaction before c_v and one at or after c_t. Models train on everything
before c_v; a test history also holds the [c_v, c_t) interactions no model trained on, as
production serves the events that arrive between retrains. Valid and test are drawn by the
same rule because a second rule measures something else: "the next interaction after the
valid one" follows it within a session (on JODIE Wikipedia 78% of such targets repeat the
last history item, against 54% for the first interaction after a cut; under one rule, 55%
valid and 52% test), so valid chose settings for another question than test asked. A valid
target stays before c_t, so no (history, target) pair is in both. Users new after c_v are a
cold start: not evaluated. The refit (with_valid_in_train) trains on everything before c_t.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from training.data import DataError, Interactions


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
    # Rows of "valid" / "test" that are evaluated (a fixed seeded sample on large data); a
    # part not named, or None, is evaluated whole.
    eval_rows: dict[str, np.ndarray] | None = None
    name: str = "loo"  # "loo" or "time"
    cuts: dict[str, float] | None = None  # time: {"valid": c_v, "test": c_t}
    # time: (n_users,) the training lengths of the refit (everything before c_t); None: loo,
    # where the refit adds each evaluated user's valid item.
    refit_len: np.ndarray | None = None
    # Seen items are ranked out in evaluation (repeats dropped: serving excludes them); with
    # repeats kept a target may be an item of the history, and it is ranked like any other.
    exclude_seen: bool = True

    def describe(self) -> dict:
        """What the report and the manifest record about the split."""
        out: dict = {"name": self.name, "exclude_seen": self.exclude_seen}
        if self.cuts is not None:
            out["cuts"] = self.cuts
        return out

    def evalset(self, name: str) -> EvalSet:
        """The evaluated part of "valid" or "test"."""
        full: EvalSet = getattr(self, name)
        if self.eval_rows is None or name not in self.eval_rows:
            return full
        r = self.eval_rows[name]
        return EvalSet(full.users[r], full.prefix_len[r], full.targets[r])

    def sample_eval_users(self, limit: int, seed: int) -> None:
        """Evaluate a fixed seeded sample of `limit` users when there are more (0 = all).
        When valid and test are about the same people (loo) they share it; under the time
        split each part draws its own."""
        rng = np.random.default_rng(seed)

        def draw(n: int) -> np.ndarray | None:
            return np.sort(rng.choice(n, size=limit, replace=False)) if n > limit > 0 else None

        test = draw(len(self.test))  # drawn first: loo's sample is the one it always was
        same = np.array_equal(self.valid.users, self.test.users)
        valid = test if same else draw(len(self.valid))
        rows = {k: v for k, v in (("test", test), ("valid", valid)) if v is not None}
        self.eval_rows = rows or None

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
        """The same split with the valid part moved into training (for a refit after model
        selection): loo adds each evaluated user's valid item, time trains on everything
        before the test cut-off. Test is unchanged and still unseen."""
        if self.refit_len is not None:
            train_len = self.refit_len
        else:
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

    @functools.cached_property
    def never_trained(self) -> np.ndarray:
        """(n_items + 1,) bool: the items no training row holds (padding excluded). Under
        split=time, items that first appear after the valid cut-off; under loo, items seen
        only in valid or test rows. Models trained on this split know them by their content
        alone, as serving knows an item added after the data was cut (a fresh Split, such
        as with_valid_in_train's, computes its own)."""
        out = self.item_counts() == 0
        out[0] = False
        return out

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


# Shares of the interactions at or after the time split's cut-offs (module docstring).
TIME_TEST_AFTER = 0.05
TIME_VALID_AFTER = 0.10


def _cut(data: Interactions, after: float) -> float:
    """The timestamp leaving `after` of the interactions at or after it."""
    return float(np.quantile(data.timestamps, 1.0 - after, method="higher"))


def _before(data: Interactions, cut: float) -> np.ndarray:
    """(n_users,) how many of each user's interactions are before `cut` (rows per user are
    sorted by time, so they are a leading run of the sequence)."""
    owner = np.repeat(np.arange(data.n_users), data.lengths())
    return np.bincount(owner[data.timestamps < cut], minlength=data.n_users)


def _first_at(data: Interactions, users: np.ndarray, before: np.ndarray) -> EvalSet:
    """R(c) for `users`: the first interaction at or after c given everything before it."""
    return EvalSet(users, before[users], data.items[data.offsets[users] + before[users]])


def time_split(
    data: Interactions, valid_after: float = TIME_VALID_AFTER, test_after: float = TIME_TEST_AFTER
) -> Split:
    """The global time split (module docstring)."""
    c_v, c_t = _cut(data, valid_after), _cut(data, test_after)
    train_len, refit_len = _before(data, c_v), _before(data, c_t)
    known = train_len >= 1  # users new after c_v are a cold start
    valid = _first_at(data, np.flatnonzero(known & (refit_len > train_len)), train_len)
    test = _first_at(data, np.flatnonzero(known & (data.lengths() > refit_len)), refit_len)
    if not len(valid) or not len(test):
        raise DataError(
            f"split=time: no user can be evaluated ({len(valid)} for valid, {len(test)} for "
            f"test): a user needs an interaction before the valid cut-off ({c_v}) and one "
            f"in [{c_v}, {c_t}) for valid, one at or after {c_t} for test"
            + ("; the two cut-offs coincide (too few distinct timestamps)" if c_v >= c_t else "")
        )
    return Split(
        data=data,
        train_len=train_len,
        valid=valid,
        test=test,
        has_ties=_ties(data, train_len),
        name="time",
        cuts={"valid": c_v, "test": c_t},
        refit_len=refit_len,
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
