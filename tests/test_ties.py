"""tie_order=auto: the file's order of a user's same-timestamp rows is kept when most rows
tie (basket timestamps) and the ties are not listed by item id (training/ties.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import write_csv
from training.config import DataConfig
from training.data import load_interactions


def load(tmp_path, rows, **kw):
    path = write_csv(tmp_path / "t.csv", ["user_id", "item_id", "timestamp"], rows)
    cfg = DataConfig(min_interactions=1, min_users=1, **kw)
    return load_interactions(str(path), cfg).stats["ties"]


def baskets(order):
    """Ten users, each with two 4-item baskets (one timestamp each) in the given order."""
    return [
        [f"u{u}", item, 100 * u + b]
        for u in range(10)
        for b, basket in enumerate(order(u))
        for item in basket
    ]


def test_an_unsorted_tie_order_is_kept_as_the_order_of_events(tmp_path, capsys):
    got = load(tmp_path, baskets(lambda u: [["c", "a", "d", "b"], ["f", "e", "h", "g"]]))
    assert got["mode"] == "file" and got["chosen_by"] == "auto"
    assert got["share"] == pytest.approx(60 / 70)  # 6 of each user's 7 consecutive pairs
    assert "ties: auto chose file" in capsys.readouterr().err


@pytest.mark.parametrize(
    "first, second",
    [
        # numbers in order (as strings "10" < "11" < "2" < "9": not in string order)
        (["2", "9", "10", "11"], ["20", "21", "30", "100"]),
        (["11", "10", "9", "2"], ["100", "30", "21", "20"]),  # the same, descending
    ],
)
def test_ties_listed_by_item_id_are_shuffled(tmp_path, capsys, first, second):
    got = load(tmp_path, baskets(lambda u: [first, second]))
    assert got["mode"] == "shuffle" and "listed by item id" in got["why"]
    assert "ties: auto chose shuffle" in capsys.readouterr().err


def test_string_ids_listed_in_string_order_are_shuffled(tmp_path):
    got = load(tmp_path, baskets(lambda u: [["b10", "b2", "c", "d"], ["x1", "x2", "y", "z"]]))
    assert got["mode"] == "shuffle"


def test_a_clocks_occasional_ties_are_shuffled(tmp_path):
    # each user: c, a, d in one second (one pair down, one up), then six rows a clock apart
    times = [1, 1, 1, 2, 3, 4, 5, 6, 7]
    rows = [[f"u{u}", x, t] for u in range(10) for x, t in zip("cadefghij", times, strict=True)]
    got = load(tmp_path, rows)
    assert got["mode"] == "shuffle" and got["share"] == pytest.approx(0.25)
    assert "a clock's collisions" in got["why"]


def test_no_ties_says_nothing(tmp_path, capsys):
    rows = [[f"u{u}", f"i{t}", t] for u in range(5) for t in range(4)]
    got = load(tmp_path, rows)
    assert got["share"] == 0 and "ties:" not in capsys.readouterr().err


def test_a_set_order_is_kept_and_not_announced(tmp_path, capsys):
    got = load(tmp_path, baskets(lambda u: [["c", "a", "d", "b"]]), tie_order="shuffle")
    assert got["mode"] == "shuffle" and got["chosen_by"] == "set"
    assert "ties:" not in capsys.readouterr().err


def test_the_order_chosen_is_part_of_a_checkpoints_identity(tmp_path):
    # auto resolves from the data and the rule may change between versions: a checkpoint
    # trained in one order must not resume in the other
    from training import pipeline
    from training.config import from_hyperparameters
    from training.dist import DistEnv
    from training.trainer import Phase

    path = write_csv(
        tmp_path / "t.csv",
        ["user_id", "item_id", "timestamp"],
        baskets(lambda u: [["c", "a", "d", "b"], ["f", "e", "h", "g"]]),
    )
    identities = []
    for order in ("file", "shuffle"):
        cfg = from_hyperparameters({"tie_order": order, "d_model": "8", "n_heads": "1"})
        cfg.data.min_interactions = cfg.data.min_users = 1
        data = load_interactions(str(path), cfg.data)
        phase = Phase("teacher", pipeline.build_teacher(cfg, data), 1e-3, 1)
        identities.append(pipeline._identity(phase, cfg, data, DistEnv()))
    assert [i["ties"] for i in identities] == ["file", "shuffle"]


def test_repeated_lines_and_huge_ids_do_not_read_as_a_sort(tmp_path):
    from training.ties import sorted_share

    # GIVEN ties in no id order, each line repeated (repeats kept), with ids above 2**53
    big = [str(2**60 + k) for k in (3, 1, 2, 0)]
    codes = np.array([sorted(big).index(i) for i in big for _ in range(60)])
    users, ts = np.zeros(len(codes), int), np.zeros(len(codes))
    # THEN the equal pairs say nothing and the order found is the lines' own (2 of 3 down)
    tied, pairs, one_way = sorted_share(np.array(sorted(big)), codes, users, ts)
    assert tied == pairs == len(codes) - 1 and one_way == pytest.approx(2 / 3)


def test_one_text_id_does_not_hide_a_numeric_sort(tmp_path):
    got = load(
        tmp_path,
        [
            *baskets(lambda u: [["2", "9", "10", "11"], ["20", "21", "30", "100"]]),
            ["u99", "POST", 5],
            ["u99", "1", 6],
        ],
    )
    assert got["mode"] == "shuffle"


def test_a_set_order_holds_for_data_built_by_hand():
    from types import SimpleNamespace

    from training.ties import tie_mode

    assert tie_mode(SimpleNamespace(stats={}), "file") == "file"
    assert tie_mode(SimpleNamespace(stats={}), "auto") == "shuffle"
    assert tie_mode(SimpleNamespace(stats={"ties": {"mode": "file"}}), "auto") == "file"
