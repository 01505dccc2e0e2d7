"""The collaborative-filtering baselines (training/cf.py): they learn a planted pattern, their
hyperparameters are chosen on valid alone, and nothing they hold grows as users x items."""

from __future__ import annotations

import numpy as np
import pytest

from training import cf
from training.data import Interactions
from training.evaluate import sample_negatives
from training.split import Split, leave_one_out


def _interactions(sequences: list[np.ndarray], n_items: int) -> Interactions:
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    items = np.concatenate(sequences).astype(np.int64)
    return Interactions(
        user_ids=np.array([f"u{i}" for i in range(len(sequences))]),
        item_ids=np.array([f"i{i}" for i in range(1, n_items + 1)]),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        items=items,
        timestamps=np.arange(len(items), dtype=np.float64),
        fingerprint="sha256:test",
    )


def _communities(seed: int = 0, n_users: int = 200, k: int = 4) -> Split:
    """k groups of 10 items (1-10, 11-20, ...): user u takes 3 to 9 distinct items of group
    u % k (sizes vary, so items of a group occur together more than apart)."""
    rng = np.random.default_rng(seed)
    groups = np.arange(1, 10 * k + 1).reshape(k, 10)
    sizes = rng.integers(3, 10, size=n_users)
    sequences = [rng.choice(groups[u % k], size=sizes[u], replace=False) for u in range(n_users)]
    return leave_one_out(_interactions(sequences, 10 * k))


def _negatives(split: Split) -> dict:
    return {
        name: sample_negatives(split, split.evalset(name), 5, seed=i)
        for i, name in enumerate(("valid", "test"))
    }


@pytest.mark.parametrize(
    "make", [lambda s: cf.ALS(s, factors=4, alpha=10.0, iterations=15), lambda s: cf.EASE(s, 5.0)]
)
def test_a_planted_pattern_is_ranked_first(make):
    # GIVEN four communities of 10 items that never mix in any user's history
    model = make(_communities())
    # WHEN a history from each community is scored
    histories = [np.array([1, 2, 3]), np.array([12, 15]), np.array([29]), np.array([31, 40])]
    scores = model(histories)
    # THEN every unseen item of the user's own community outranks every other item
    assert scores.shape == (4, 41)
    for row, history in enumerate(histories):
        group = np.arange(10 * row + 1, 10 * row + 11)
        own = np.setdiff1d(group, history)
        other = np.setdiff1d(np.arange(1, 41), group)
        assert scores[row, own].min() > scores[row, other].max()


def test_hyperparameters_are_chosen_on_valid_only(monkeypatch):
    # GIVEN a grid of three ALS points and an evaluation that records which split it scores
    split = _communities(seed=1)
    negatives = _negatives(split)
    grid = (
        {"factors": 1, "regularization": 0.1, "alpha": 1.0},
        {"factors": 4, "regularization": 0.1, "alpha": 10.0},
        {"factors": 2, "regularization": 100.0, "alpha": 1.0},
    )
    monkeypatch.setattr(cf, "ALS_GRID", grid)
    monkeypatch.setattr(cf, "EASE_MAX_ITEMS", 0)  # ALS alone here
    scored: list[str] = []
    real = cf.evaluate

    def recording(scorer, split_, evalset, negs, **kw):
        scored.append("test" if np.array_equal(evalset.targets, split.test.targets) else "valid")
        return real(scorer, split_, evalset, negs, **kw)

    monkeypatch.setattr(cf, "evaluate", recording)
    metrics, record = cf.evaluate_cf(split, negatives)

    # THEN every grid point is scored on valid, test once at the end, and the choice is the
    # best valid figure
    assert scored == ["valid"] * len(grid) + ["test"]
    figures = [point["valid_ndcg@10"] for point in record["als"]["grid"]]
    assert record["als"]["params"] == grid[int(np.argmax(figures))]
    assert metrics["als"]["valid"]["full"]["ndcg@10"] == pytest.approx(max(figures), abs=1e-5)

    # AND other test targets change nothing about the choice
    scrambled = np.roll(split.test.targets, 1)
    monkeypatch.setattr(split.test, "targets", scrambled)
    _, again = cf.evaluate_cf(split, negatives)
    assert again["als"]["params"] == record["als"]["params"]

    def figures_of(rec: dict) -> list[dict]:
        return [{k: v for k, v in p.items() if k != "seconds"} for p in rec["als"]["grid"]]

    assert figures_of(again) == figures_of(record)
    assert record["ease"]["skipped"].startswith("40 items > 0")


def test_no_step_holds_users_by_items():
    # GIVEN 40,000 users and 30,000 items: users x items float32 would be 4.5 GB
    rng = np.random.default_rng(2)
    n_users, n_items = 40_000, 30_000
    sequences = [rng.choice(n_items, size=5, replace=False) + 1 for _ in range(n_users)]
    split = leave_one_out(_interactions(sequences, n_items))
    dense_mb = n_users * n_items * 4 / 2**20

    # WHEN ALS is fitted (memory traced) and a batch of histories scored
    model, _, peak_mb = cf.traced_fit(lambda: cf.ALS(split, factors=8, iterations=2))
    scores = model([split.history(u, 3) for u in range(7)])

    # THEN the fit's peak is a sliver of the dense matrix, no users x factors table is kept,
    # scores are per batch, and EASE is not offered for this catalog
    assert peak_mb < dense_mb / 100, (peak_mb, dense_mb)
    assert model.model.user_factors is None
    assert scores.shape == (7, n_items + 1)
    assert set(cf.grids(n_items)) == {"als"}
    assert set(cf.grids(cf.EASE_MAX_ITEMS)) == {"als", "ease"}
    # and from a million training interactions the ALS grid is the smaller one
    assert cf.grids(n_items, cf.LARGE_LOG)["als"][1] == cf.ALS_GRID_LARGE
    assert cf.grids(n_items, cf.LARGE_LOG - 1)["als"][1] == cf.ALS_GRID
    # and cf_grid=first keeps each grid's first point only (what the demo runs)
    first = cf.grids(cf.EASE_MAX_ITEMS, first_only=True)
    assert first["als"][1] == cf.ALS_GRID[:1] and first["ease"][1] == cf.EASE_GRID[:1]


def test_a_history_with_a_repeated_item_counts_it_once():
    m = cf.history_matrix([np.array([3, 3, 5]), np.array([], dtype=np.int64)], 8)
    assert m.shape == (2, 8)
    assert m.toarray()[0].tolist() == [0, 0, 0, 1, 0, 1, 0, 0]
    assert m.toarray()[1].sum() == 0
