"""Leave-one-out split and ranking metrics, checked against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.conftest import write_csv
from training.batching import training_pairs, training_windows
from training.config import DataConfig
from training.data import load_interactions
from training.evaluate import evaluate, sample_negatives
from training.split import leave_one_out


@pytest.fixture
def tiny(tmp_path):
    # u1: a b c d (4 items) ; u2: b c e (3) ; u3: a e (2, train only); catalog a..f (6 items)
    rows = [["u1", x, t] for t, x in enumerate("abcd")]
    rows += [["u2", x, t] for t, x in enumerate("bce")]
    rows += [["u3", x, t] for t, x in enumerate("ae")]
    rows += [["u4", "f", 0]]
    path = write_csv(tmp_path / "t.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    return data, leave_one_out(data)


def ids(data, items):
    return [data.item_ids[i - 1] for i in items]


def test_leave_one_out_by_time(tiny):
    data, split = tiny
    u = {name: int(np.flatnonzero(data.user_ids == name)[0]) for name in data.user_ids}
    assert ids(data, split.train_sequence(u["u1"])) == ["a", "b"]
    assert ids(data, split.train_sequence(u["u2"])) == ["b"]
    assert ids(data, split.train_sequence(u["u3"])) == ["a", "e"]  # < 3: train only
    assert sorted(data.user_ids[split.test.users]) == ["u1", "u2"]
    row = list(split.test.users).index(u["u1"])
    assert ids(data, [split.valid.targets[row]]) == ["c"]
    assert ids(data, [split.test.targets[row]]) == ["d"]
    assert ids(data, split.history(u["u1"], split.valid.prefix_len[row])) == ["a", "b"]
    assert ids(data, split.history(u["u1"], split.test.prefix_len[row])) == ["a", "b", "c"]


def fixed_scorer(data, order):
    """Scores every user the same: items in `order` get descending scores, others 0."""
    scores = np.zeros(data.n_items + 1, dtype=np.float32)
    for rank, item in enumerate(order):
        scores[1 + list(data.item_ids).index(item)] = 100.0 - rank

    def score(histories):
        return np.tile(scores, (len(histories), 1))

    return score


def test_full_ranking_metrics_hand_computed(tiny):
    data, split = tiny
    neg = sample_negatives(split, split.test, 100, seed=0)
    # Order f > e > d > c > b > a. Test: u1 saw a b c, target d -> unseen ranking f e d: rank 2.
    # u2 saw b c, target e -> ranking f e: rank 1.
    m = evaluate(fixed_scorer(data, "fedcba"), split, split.test, neg, k=2)["full"]
    assert m["hr@2"] == pytest.approx(0.5)  # only u2's target is in its top 2
    assert m["ndcg@2"] == pytest.approx((0 + 1 / math.log2(3)) / 2)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # top-2 lists: u1 -> f, e ; u2 -> f, e  => 2 of 6 catalog items covered
    assert m["coverage@2"] == pytest.approx(2 / 6)
    assert m["users"] == 2


def test_seen_items_are_excluded_from_full_ranking(tiny):
    data, split = tiny
    neg = sample_negatives(split, split.test, 100, seed=0)
    # a, b, c on top: all seen by u1, so its target d still ranks first among unseen items.
    m = evaluate(fixed_scorer(data, "abcdef"), split, split.test, neg, k=1)["full"]
    assert m["hr@1"] == pytest.approx(0.5)  # u1 hits (d); u2's unseen order a, d, e -> miss


def test_sampled_protocol_uses_unseen_negatives(tiny):
    data, split = tiny
    neg = sample_negatives(split, split.test, 100, seed=0)
    for row, user in enumerate(split.test.users):
        chosen = neg[row][neg[row] > 0]
        assert len(set(chosen)) == len(chosen)
        assert not set(chosen) & set(data.sequence(user))
        # the catalog runs out: all unseen items are used
        assert len(chosen) == data.n_items - len(data.sequence(user))
    # u1 (seen a b c d): negatives e, f. Order f > e > d: target d is third of three.
    m = evaluate(fixed_scorer(data, "fedcba"), split, split.test, neg, k=10)["sampled100"]
    u2_rank = 1  # u2 (seen b c e): negatives a, d, f; f > e
    assert m["mrr"] == pytest.approx((1 / 3 + 1 / (u2_rank + 1)) / 2)


def test_ties_are_broken_at_random_not_in_our_favour(tmp_path):
    # A constant scorer over 200 items: the expected HR@10 is ~10/(unseen items), not 1.
    rows = [[f"u{u}", f"i{(u * 7 + t) % 200}", t] for u in range(300) for t in range(5)]
    path = write_csv(tmp_path / "c.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    split = leave_one_out(data)
    neg = sample_negatives(split, split.test, 100, seed=0)
    m = evaluate(
        lambda h: np.ones((len(h), data.n_items + 1), np.float32), split, split.test, neg, k=10
    )
    assert m["full"]["hr@10"] == pytest.approx(10 / 196, abs=0.03)
    assert m["sampled100"]["hr@10"] == pytest.approx(10 / 101, abs=0.04)


def test_ties_are_shuffled_for_training_only(tmp_path):
    # u1 rated a, b, c in the same second, then d, e; f, g are valid/test
    rows = [["u1", x, t] for x, t in zip("abcdefg", [5, 5, 5, 6, 7, 8, 9], strict=True)]
    rows += [["u2", x, t] for t, x in enumerate("abcd")]
    path = write_csv(tmp_path / "t.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    split = leave_one_out(data)
    assert list(split.has_ties) == [True, False]
    rng = np.random.default_rng(0)
    orders = {tuple(ids(data, split.train_window(0, 5, 50, rng))) for _ in range(50)}
    assert len(orders) == 6  # all orders of the tie a, b, c ...
    assert all(o[3:] == ("d", "e") for o in orders)  # ... and nothing else moves
    assert ids(data, split.train_window(1, 2, 50, rng)) == ["a", "b"]
    assert ids(data, split.train_window(0, 5, 50)) == list("abcde")  # no rng: file order


def test_windows_make_every_training_interaction_a_target_once(tmp_path):
    # GIVEN users with 12, 5, 2 and 1 training items and a 4-item window
    lengths = {"long": 14, "mid": 7, "short": 4, "one": 1}
    rows = [[u, f"i{t}", t] for u, n in lengths.items() for t in range(n)]
    path = write_csv(tmp_path / "w.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    split = leave_one_out(data)
    trainable = np.flatnonzero(split.train_len >= 2)
    # WHEN every window of the trainable users is cut
    users, ends = training_windows(split, trainable, width=4)
    _, targets = training_pairs(split, users, ends, width=4)
    # THEN each user's targets are items 2..n of their training sequence, each exactly once
    for u in trainable:
        rows_of_u = targets[users == u]
        got = sorted(int(x) for x in rows_of_u[rows_of_u != 0])
        assert got == sorted(int(x) for x in split.train_sequence(u)[1:])
    # AND the newest window of each user ends at their last training item
    assert all(max(ends[users == u]) == split.train_len[u] for u in trainable)
    # AND only the newest window with all_windows=False (SASRec's own code)
    users1, ends1 = training_windows(split, trainable, width=4, all_windows=False)
    assert list(users1) == list(trainable)
    assert list(ends1) == list(split.train_len[trainable])


def test_refit_split_moves_only_the_valid_item_into_training(tmp_path):
    # u1: a b c d e, where d (valid) shares a timestamp with c; u2: a e (train only)
    rows = [["u1", x, t] for x, t in zip("abcde", [1, 2, 3, 3, 4], strict=True)]
    rows += [["u2", x, t] for t, x in enumerate("ae")]
    path = write_csv(tmp_path / "t.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    split = leave_one_out(data)
    refit = split.with_valid_in_train()
    assert ids(data, refit.train_sequence(0)) == ["a", "b", "c", "d"]
    assert ids(data, refit.train_sequence(1)) == ["a", "e"]  # had no valid item
    assert ids(data, split.train_sequence(0)) == ["a", "b", "c"]  # the original is untouched
    assert list(split.has_ties) == [False, False]
    assert list(refit.has_ties) == [True, False]  # c and d now both train
    assert refit.test is split.test  # the test item stays held out


@pytest.mark.parametrize("order", ["shuffle", "file"])
def test_the_trainer_keeps_ties_in_file_order_only_when_asked(tmp_path, monkeypatch, order):
    # GIVEN a log whose users take three items in one second (a basket), then two more
    import training.trainer as trainer
    from training.config import from_hyperparameters
    from training.dist import DistEnv
    from training.pipeline import build_teacher

    rows = [
        [f"u{u}", x, t]
        for u in range(4)
        for x, t in zip("abcdefg", [5, 5, 5, 6, 7, 8, 9], strict=True)
    ]
    path = write_csv(tmp_path / "t.csv", ["user_id", "item_id", "timestamp"], rows)
    cfg = from_hyperparameters({"tie_order": order, "d_model": "8", "n_heads": "1"})
    cfg.data.min_interactions = cfg.data.min_users = 1
    data = load_interactions(str(path), cfg.data)
    split = leave_one_out(data)
    phase = trainer.Phase("teacher", build_teacher(cfg, data), 1e-3, 1)
    run = trainer._start(phase, split, cfg, DistEnv())
    seen: list[tuple[str, ...]] = []
    real = trainer.training_pairs

    def record(*args):
        inputs, targets = real(*args)
        seen.extend(tuple(ids(data, row[row > 0])) for row in inputs)
        return inputs, targets

    monkeypatch.setattr(trainer, "training_pairs", record)
    # WHEN the trainer takes steps over every user's window, epoch after epoch
    for epoch in range(10):
        trainer._step(run, np.arange(len(run.win_users)), np.random.default_rng(epoch))
    # THEN "file" trains every window (inputs a b c d, targets b c d e) in the file's
    # order; "shuffle" reorders the basket, and only the basket
    assert len(seen) == 40 and all(s[3:] == ("d",) for s in seen)
    orders = {s[:3] for s in seen}
    assert orders == {("a", "b", "c")} if order == "file" else len(orders) > 1
