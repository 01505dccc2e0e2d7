"""benchmarks/ceiling.py's oracle is the generator of benchmarks/scale.py, written as
probabilities: it must agree with what the generator actually draws."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from ceiling import Oracle
from scale import synthesize, walk


@pytest.fixture(scope="module")
def tiny_walk():
    return walk(n_users=3_000, n_items=1_200, seed=3)


def test_walk_is_the_benchmark_data_with_its_hidden_state(tiny_walk):
    df, hidden = tiny_walk
    assert df.equals(synthesize(3_000, 1_200, seed=3))
    assert len(hidden["kind"]) == len(hidden["cluster"]) == len(hidden["prev"]) == len(df)
    # one first row per user; the rest 10% moves, 45% neighbours, 45% popular in cluster
    assert (hidden["kind"] == 0).sum() == 3_000
    share = np.bincount(hidden["kind"][hidden["kind"] > 0], minlength=4)[1:] / (len(df) - 3_000)
    assert share == pytest.approx([0.10, 0.45, 0.45], abs=0.01)


def test_oracle_is_a_distribution_that_explains_every_drawn_item(tiny_walk):
    df, hidden = tiny_walk
    cat = hidden["catalog"]
    oracle = Oracle(cat, hidden["direction"], code_of=np.arange(1, cat.n_items + 1))
    rows = np.flatnonzero(hidden["kind"] > 0)[::97]  # a spread of steps of every kind
    users, items = df["user_id"].to_numpy(), df["item_id"].to_numpy()
    log_lik = []
    for r in rows:
        p = oracle.scores(users[r], hidden["cluster"][r], hidden["prev"][r], cat.n_items + 1)
        assert p.sum() == pytest.approx(1.0, abs=1e-9)
        assert p[items[r] + 1] > 0  # the item drawn had a chance under the oracle
        log_lik.append(np.log(p[items[r] + 1]))
    # AND it explains the draws far better than a uniform guess over the catalog
    assert np.mean(log_lik) > np.log(1 / cat.n_items) + 3


@pytest.mark.parametrize("what", ["no data", "unreadable teacher"])
def test_bad_input_is_one_line_and_exit_1(tmp_path, what):
    import subprocess

    rung = tmp_path / "S"
    if what == "unreadable teacher":
        (rung / "data").mkdir(parents=True)
        synthesize(10_000, 4_800, seed=0).to_parquet(rung / "data" / "interactions.parquet")
        (rung / "model").mkdir()
        (rung / "model" / "teacher_config.json").write_text("{")
    script = str(REPO / "benchmarks" / "ceiling.py")
    proc = subprocess.run(
        [sys.executable, script, "--rung", "S", "--work", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ceiling: ") and "Traceback" not in proc.stderr
    assert ("no such file" in last) if what == "no data" else ("no readable teacher" in last)
