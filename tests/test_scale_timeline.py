"""benchmarks/scale.py --timeline spread: the ladder's rows restamped so a time split has users
on both sides of its cut-offs, with every user's order (and so leave-one-out) unchanged."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from scale import PERIOD, synthesize, write_data


def _written(tmp_path, timeline: str) -> pd.DataFrame:
    write_data(tmp_path, n_users=2_000, n_items=1_200, seed=3, text=False, timeline=timeline)
    name = "interactions.parquet" if timeline == "arrivals" else "interactions-spread.parquet"
    return pd.read_parquet(tmp_path / name)


def test_spread_keeps_the_rows_and_each_users_order(tmp_path):
    ladder = synthesize(2_000, 1_200, seed=3)
    spread = _written(tmp_path, "spread")
    assert spread[["user_id", "item_id"]].equals(ladder[["user_id", "item_id"]])
    t = spread["timestamp"].to_numpy()
    same_user = spread["user_id"].to_numpy()[1:] == spread["user_id"].to_numpy()[:-1]
    assert (np.diff(t)[same_user] > 0).all()  # strictly increasing within a user, as the walk
    assert t.min() >= 1_600_000_000 and t.max() <= 1_600_000_000 + PERIOD


def _users_across_cut(df: pd.DataFrame) -> int:
    """Users with a row before the 90% quantile of time and another after the 95% one: who a
    time split (valid cut-off at 10% of rows, test at 5%) can score."""
    t = df["timestamp"]
    early, late = t.quantile(0.90), t.quantile(0.95)
    before = set(df.loc[t < early, "user_id"])
    after = set(df.loc[t >= late, "user_id"])
    return len(before & after)


def test_spread_gives_a_time_split_many_users_the_ladders_stamps_do_not(tmp_path):
    spread = _written(tmp_path, "spread")
    ladder = _written(tmp_path, "arrivals")
    assert _users_across_cut(spread) > 5 * max(_users_across_cut(ladder), 1)
    assert _users_across_cut(spread) > 100
