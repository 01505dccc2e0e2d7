"""The new-item offset: chosen on valid (training/new_items.py), carried in the manifest, and
applied by the one scoring function serving and the cold benchmark share."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from lmrec import content, liveitems

from training import hybrid
from training.config import DataConfig, ModelConfig
from training.item_content import item_content
from training.model import SASRec
from training.new_items import choose_offset, chosen, newest_items
from training.split import leave_one_out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A content model (random weights) over synthetic data with a catalog, and its split."""
    from tests.conftest import synthetic_rows, write_csv
    from training.data import load_interactions

    tmp = tmp_path_factory.mktemp("newitems")
    rows = synthetic_rows(n_users=40, n_items=120, length=20)
    src = write_csv(tmp / "d.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(src), DataConfig(min_interactions=10, min_users=2))
    data.catalog = pd.DataFrame(
        {"title": [f"item {i} {'red' if int(i[1:]) % 2 else 'blue'}" for i in data.item_ids]},
        index=pd.Index(data.item_ids, name="item_id"),
    )
    data.content = item_content(data, DataConfig(content_buckets=256))
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=data.n_items, d_model=16, n_blocks=1, n_heads=2, max_len=10)
    model = SASRec(cfg, data.content)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model.eval()
    return model, data, leave_one_out(data), tmp


def test_newest_items_are_the_latest_first_seen_in_training(trained):
    _, data, split, _ = trained
    new = newest_items(split, 0.1)
    mask = split.train_mask()
    first = pd.Series(data.timestamps[mask]).groupby(data.items[mask]).min()
    assert len(new) == int(np.ceil(0.1 * len(first)))
    assert first[new].min() >= first.drop(new).max()


def test_the_offset_is_the_best_mixed_valid_grid_point_if_it_beats_zero_beyond_noise(trained):
    model, _, split, _ = trained
    record = choose_offset(model, split)
    grid, ndcg = record["grid"], record["valid_ndcg@10"]
    assert grid[0] == 0.0 and grid == sorted(grid) and len(grid) == len(ndcg) > 1
    mean, low, _ = record["best_vs_0"]
    best = grid[int(np.argmax(ndcg))]
    assert mean == pytest.approx(max(ndcg) - ndcg[0], abs=1e-5)
    assert record["offset"] == (best if low > 0 else 0.0)
    assert record["users"] == len(split.valid) and record["new_items"] > 0


def test_the_offset_is_chosen_against_known_items_with_their_served_boost(trained):
    # GIVEN the served model's transitions: known successors of a history get a boost
    model, _, split, _ = trained
    table = dataclasses.replace(hybrid.build(split, min_users=1, per_item=50), weight=4.0)
    alone, served = choose_offset(model, split), choose_offset(model, split, table=table)
    # THEN new items need more lift to reach a top 10 among boosted known items: the grid
    # (quantiles of that need) moves up, and the choice is still one of its points
    assert max(served["grid"]) > max(alone["grid"])
    assert served["offset"] in served["grid"]


def test_a_gain_within_noise_keeps_zero_and_a_clear_one_is_taken():
    # GIVEN per-user NDCG at offsets 0, 1, 2 for 400 users
    rng = np.random.default_rng(0)
    base = rng.random(400)
    noisy = base + np.tile([0.3, -0.3], 200) + 0.001  # the best mean (+0.001), but a tie
    clear = base + 0.05  # every user gains
    # THEN a tie stays at 0, a win beyond noise moves
    assert chosen({0.0: base, 1.0: noisy})[0] == 0.0
    offset, (mean, low, _) = chosen({0.0: base, 1.0: noisy, 2.0: clear})
    assert offset == 2.0 and low > 0 and mean == pytest.approx(0.05)
    # AND one user, or no gain at all, never moves
    assert chosen({0.0: base[:1], 1.0: clear[:1]})[0] == 0.0
    assert chosen({0.0: base, 1.0: base})[0] == 0.0


def test_a_model_without_content_keeps_offset_zero(trained):
    _, data, split, _ = trained
    plain = SASRec(ModelConfig(n_items=data.n_items, d_model=8, n_heads=2, max_len=10))
    assert choose_offset(plain, split)["offset"] == 0.0


def test_the_manifest_carries_the_offset_and_serving_reads_it(trained):
    from lmrec import bundle

    from training.bundle_writer import write_bundle

    model, data, _, tmp = trained
    out = tmp / "bundle"
    out.mkdir()
    document = {"metrics": {}, "config": {}, "summary": {"new_items": {"offset": 1.25}}}
    write_bundle(out, model, data, document, "float32")
    assert content.new_item_offset(bundle.load(out).manifest) == 1.25


@pytest.mark.parametrize(
    "manifest",
    [{}, {"new_items": 3}, {"new_items": {"offset": "x"}}, {"new_items": {"offset": "nan"}}],
)
def test_a_missing_or_malformed_offset_is_zero(manifest):
    assert content.new_item_offset(manifest) == 0.0


def test_live_new_items_are_scored_with_the_offset():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 4)).astype(np.float32)
    query = rng.normal(size=4).astype(np.float32)
    ov = dataclasses.replace(
        liveitems.empty("v"), vectors=vectors, available=np.ones(5, bool), offset=2.0
    )
    at, values = liveitems.scores(ov, query, np.ones(5, bool), k=5)
    np.testing.assert_allclose(values, vectors[at] @ query + 2.0, rtol=1e-6)
    assert list(at) == list(np.argsort(-(vectors @ query)))
