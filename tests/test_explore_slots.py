"""benchmarks/cold_lift_study.py's exploration slots follow lmrec.liveitems.merge's rule."""

from __future__ import annotations

import numpy as np

from benchmarks.cold_lift_study import explore_ranks


def _scores(new_scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    # row 0 padding, known items 1..12 scored 12..1, then the new items
    s = np.array([[-np.inf, *range(12, 0, -1), *new_scores]], np.float64)
    return s, np.arange(13, 13 + len(new_scores))


def test_new_items_take_the_last_slots_best_first_and_push_known_items_out():
    s, new = _scores([0.5, 0.7, -np.inf])  # item 15 is hidden (seen)
    rank = lambda target, n: int(explore_ranks(s, new, np.array([target]), n)[0])  # noqa: E731
    # no slot: the ten best known items; new ones below them are out (rank k = 10)
    assert [rank(t, 0) for t in (1, 10, 11, 14)] == [0, 9, 10, 10]
    # one slot: the best new item (14) is 10th; the 10th known item drops out
    assert [rank(t, 1) for t in (9, 10, 14, 13)] == [8, 10, 9, 10]
    # two slots: 14 then 13 in the last two; a hidden new item never fills a slot
    assert [rank(t, 2) for t in (8, 9, 14, 13)] == [7, 10, 8, 9]
    assert rank(15, 3) == 10 and rank(13, 3) == 9


def test_a_new_item_already_in_the_top_counts_as_shown():
    s, new = _scores([20.0, 0.7])  # item 13 outscores every known item
    rank = lambda target, n: int(explore_ranks(s, new, np.array([target]), n)[0])  # noqa: E731
    assert rank(13, 1) == 0 and rank(14, 1) == 10 and rank(9, 1) == 9  # nothing to add
    assert rank(14, 2) == 9 and rank(9, 2) == 10  # one more slot: 14 replaces known item 9


def test_only_young_items_fill_slots_and_an_old_one_in_the_top_does_not_count():
    s, new = _scores([20.0, 0.7, 0.5])  # 13 outscores every known item, but is old
    young = np.array([[False, False, True]])  # only 15 is under the age cut-off
    rank = lambda target, n: int(explore_ranks(s, new, np.array([target]), n, young)[0])  # noqa: E731
    # 13 stays first on its score; the slot goes to the young 15, not to 14 (better, old)
    assert rank(13, 1) == 0 and rank(15, 1) == 9 and rank(14, 1) == 10 and rank(9, 1) == 10
    none = np.zeros((1, 3), bool)  # no young item: no slot, the list as without exploration
    assert [int(explore_ranks(s, new, np.array([t]), 1, none)[0]) for t in (13, 9, 15)] == [
        0,
        9,
        10,
    ]
