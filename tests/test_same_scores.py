"""A scorer that ranks every user alike (popularity) is evaluated without a users x items
array (training.evaluate.SameScores); its sums, random tie draws and per-user NDCG@10 are
those of the broadcast path, on logs with ties, repeats, hidden targets and -inf scores."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import Interactions
from training.evaluate import SameScores, evaluate_partial, sample_negatives
from training.split import make_split


def _log(seed: int, n_users: int = 300, n_items: int = 60, repeats: bool = False):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 25, n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if repeats:
        items = rng.integers(1, n_items + 1, int(offsets[-1]))
    else:
        items = np.concatenate([rng.permutation(n_items)[:n] + 1 for n in lengths])
    # Each user's times sorted, users interleaved in time (a time split has users on both
    # sides of its cut-offs).
    owner = np.repeat(np.arange(n_users), lengths)
    times = rng.uniform(0.0, 1e6, int(offsets[-1]))
    times = times[np.lexsort((times, owner))]
    return Interactions(
        user_ids=np.array([f"u{i}" for i in range(n_users)]),
        item_ids=np.array([f"i{i}" for i in range(n_items)]),
        offsets=offsets,
        items=items.astype(np.int64),
        timestamps=times,
        fingerprint="sha256:x",
    )


class Broadcast:
    """The same scores through the general path: a row per user."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores

    def __call__(self, histories):
        return np.broadcast_to(self.scores, (len(histories), len(self.scores)))


class Same(Broadcast):
    @property
    def same_for_all(self) -> np.ndarray:
        return self.scores


def _scores(kind: str, n_items: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    if kind == "distinct":
        return rng.permutation(n_items + 1).astype(np.float32)
    s = rng.integers(0, 4, n_items + 1).astype(np.float32)  # many ties
    if kind == "with_inf":
        s[rng.choice(n_items + 1, 10, replace=False)] = -np.inf  # unknown items
    return s


@pytest.mark.parametrize("kind", ["distinct", "ties", "with_inf"])
@pytest.mark.parametrize(("repeats", "exclude_seen"), [(False, True), (True, False), (True, True)])
@pytest.mark.parametrize("batch_size", [7, 512])
def test_same_scores_equal_the_broadcast_path(kind, repeats, exclude_seen, batch_size):
    data = _log(3, repeats=repeats)  # repeats and exclusions: a history may hold an item twice
    split = make_split(data, "loo", exclude_seen=exclude_seen)
    evalset = split.evalset("test")
    negatives = sample_negatives(split, evalset, 20, seed=1)
    scores = _scores(kind, data.n_items, 3)
    results = []
    for scorer in (Broadcast(scores), Same(scores)):
        per_user = np.full(len(evalset), -1.0)
        kw = {"batch_size": batch_size, "seed": 5, "per_user": per_user}
        partial = evaluate_partial(scorer, split, evalset, negatives, **kw)
        results.append((partial, per_user))
    (slow, slow_user), (fast, fast_user) = results
    for key in slow:
        if key == "covered" and kind != "distinct":
            continue  # which of several items tied at the 10th place: either is right
        np.testing.assert_array_equal(fast[key], slow[key], err_msg=key)
    np.testing.assert_array_equal(fast_user, slow_user)
    assert (fast_user >= 0).all()


def _both(split, scores, k: int = 10):
    evalset = split.evalset("test")
    negatives = sample_negatives(split, evalset, 20, seed=1)
    out = []
    for scorer in (Broadcast(scores), Same(scores)):
        per_user = np.zeros(len(evalset))
        kw = {"k": k, "batch_size": 64, "seed": 2, "per_user": per_user}
        out.append((evaluate_partial(scorer, split, evalset, negatives, **kw), per_user))
    return out


def test_time_split_with_new_items_and_k_above_the_catalog():
    data = _log(4, n_users=400, n_items=30)
    # Item 27 appears only in the newest rows: under the time split it is "new".
    late = data.timestamps >= np.quantile(data.timestamps, 0.9)
    data.items[(data.items == 27) & ~late] = 1
    data.items[late & (np.random.default_rng(0).random(len(late)) < 0.5)] = 27
    split = make_split(data, "time", exclude_seen=False)
    assert split.never_trained.any()
    scores = _scores("ties", data.n_items, 4)
    for k in (10, 50):
        (slow, slow_user), (fast, fast_user) = _both(split, scores, k)
        assert float(slow["n_n"]) > 0  # some targets are new items
        for key in slow:
            if key != "covered":
                np.testing.assert_array_equal(fast[key], slow[key], err_msg=key)
        np.testing.assert_array_equal(fast_user, slow_user)


# A nan target makes the broadcast path's tie count -1 (nothing equals nan): what it does
# with it is its own; this test only asks that both paths agree.
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_inf_or_nan_scores_take_the_broadcast_path():
    data = _log(5)
    split = make_split(data, "loo", exclude_seen=True)
    for bad in (np.inf, np.nan):
        scores = _scores("distinct", data.n_items, 5)
        scores[7] = bad
        (slow, slow_user), (fast, fast_user) = _both(split, scores)
        for key in slow:
            np.testing.assert_array_equal(fast[key], slow[key], err_msg=key)
        np.testing.assert_array_equal(fast_user, slow_user)


def test_counts_of_a_hidden_target_and_of_an_unknown_one():
    same = SameScores(np.array([9, 5, 5, -np.inf, 1], np.float32))  # column 0 is padding
    hist = [np.array([1]), np.array([2]), np.array([4])]
    above, ties, finite = same.counts(hist, np.array([1, 1, 3]), exclude_seen=True)
    # user 0 saw its target (hidden: -inf): 2 items alive above, the rest level with it
    # user 1: item 1 (5) ties with nothing once item 2 (5) is hidden; item 3 is -inf
    # user 2: the target is unknown (-inf): items 1, 2 alive above; padding, item 4 hidden
    assert above.tolist() == [2, 0, 2]
    assert ties.tolist() == [2, 0, 2]
    assert finite.tolist() == [False, True, False]
    top = same.top(hist, k=1, exclude_seen=True)
    assert sorted(top.tolist()) == [1, 2]  # user 0 skips item 1, users 1 and 2 take it
