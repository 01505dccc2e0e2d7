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


def test_the_offset_record_names_the_grid_and_the_changes_on_new_and_known_targets(trained):
    model, _, split, _ = trained
    record = choose_offset(model, split)
    grid, ndcg = record["grid"], record["valid_ndcg@10"]
    assert grid[0] == 0.0 and grid == sorted(grid) and len(grid) == len(ndcg) > 1
    assert record["offset"] in grid and set(record["vs_0"]) == {"new_targets", "known_targets"}
    mean, low, high = record["vs_0"]["new_targets"]
    assert low <= mean <= high
    assert record["offset"] == 0.0 or low > 0  # moved only on a gain beyond noise
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


def test_the_offset_serves_new_targets_best_without_costing_known_ones_beyond_noise():
    # GIVEN per-user NDCG at offsets 0, 1, 2, 3 for 300 known-target and 100 new-target users
    rng = np.random.default_rng(0)
    is_new = np.arange(400) >= 300
    base = np.where(is_new, 0.0, rng.random(400))
    one = base + np.where(is_new, 0.2, 0.0)  # new targets gain, known ones unchanged
    two = base + np.where(is_new, 0.4, np.tile([0.01, -0.01], 200))  # known: a tie
    three = base + np.where(is_new, 0.6, -0.05)  # known targets pay beyond noise
    found = {0.0: base, 1.0: one, 2.0: two, 3.0: three}
    # THEN the most for new targets among the points known targets do not pay for
    offset, gains = chosen(found, is_new)
    assert offset == 2.0 and gains["new_targets"][0] == pytest.approx(0.4)
    assert gains["known_targets"][1] <= 0.0 <= gains["known_targets"][2]
    # AND no gain on new targets beyond noise, or no new target at all, keeps 0
    noisy = base + np.where(is_new, np.tile([0.3, -0.3], 200), 0.0)
    assert chosen({0.0: base, 1.0: noisy}, is_new)[0] == 0.0
    assert chosen({0.0: base, 1.0: one}, np.zeros(400, bool))[0] == 0.0
    assert chosen({0.0: base[-1:], 1.0: one[-1:]}, is_new[-1:])[0] == 0.0  # one user


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


@pytest.mark.parametrize(
    "rows",
    [None, [], "1,2", [0, 1], [1, 10_000], [1.0, 2.0], [True, 2], [[1]], {"1": 1}],
)
def test_a_missing_or_malformed_row_list_lifts_nothing(rows):
    manifest = {"new_items": {"offset": 1.5} | ({} if rows is None else {"rows": rows})}
    assert len(content.content_only_rows(manifest, n_items=100)) == 0


def test_a_row_list_past_the_bound_lifts_nothing_and_training_keeps_the_newest(monkeypatch):
    # GIVEN a bound of 3 lifted rows
    from training import new_items

    monkeypatch.setattr(content, "MAX_LIFTED_ROWS", 3)
    manifest = {"new_items": {"offset": 1.5, "rows": [1, 2, 3, 4]}}
    assert len(content.content_only_rows(manifest, n_items=10)) == 0  # the cost is bounded
    # WHEN a model has five content-only rows, first seen at different times
    model = SASRec(ModelConfig(n_items=8, d_model=4, n_heads=1, max_len=4))
    model.content = torch.nn.EmbeddingBag(4, 4)  # only its presence matters here
    keep = torch.ones(9, 1)
    keep[[1, 2, 4, 6, 8]] = 0.0
    model._id_keep = keep
    items = np.array([1, 2, 4, 6, 8, 3])
    times = np.array([50, 10, 40, 30, 20, 0])
    # THEN the three first seen last are kept, sorted
    assert new_items.content_only_rows(model, (items, times)).tolist() == [1, 4, 6]


def test_only_a_positive_offset_lifts_rows():
    # serving merges boosted rows into the model's top-k on the rule that a boost only raises
    manifest = {"new_items": {"offset": 1.5, "rows": [2, 5]}}
    lift = content.row_lift(manifest, n_items=10)
    assert lift is not None and lift.rows.tolist() == [2, 5] and lift.offset == 1.5
    for offset in (0.0, -2.0):
        assert content.row_lift({"new_items": {"offset": offset, "rows": [2, 5]}}, 10) is None
    assert lift.at(np.array([1, 2, 9, 5])).tolist() == [0.0, 1.5, 0.0, 1.5]
    assert content.RowLift(np.empty(0, np.int64), 1.0).at(np.array([3])).tolist() == [0.0]


def test_the_row_lift_adds_the_offset_to_its_rows_for_every_history():
    lift = content.RowLift(np.array([2, 5]), 1.5)
    histories = [np.array([1]), np.array([3, 4])]
    scores = np.zeros((2, 7), np.float32)
    lift.add_to(scores, histories)
    assert (scores[:, [2, 5]] == 1.5).all() and scores.sum() == 6.0
    owner, items, boost = lift.boosts(histories)
    assert owner.tolist() == [0, 0, 1, 1] and items.tolist() == [2, 5, 2, 5]
    assert (boost == 1.5).all()


def test_rows_content_alone_places_are_lifted_in_the_bundle_and_in_serving(trained):
    # GIVEN the model with three items no training row held (id part masked) and an offset
    from lmrec import bundle
    from lmrec.recommend import Recommender

    from training.bundle_writer import write_bundle
    from training.new_items import content_only_rows

    model, data, _, tmp = trained
    keep = torch.ones(data.n_items + 1, 1)
    keep[[3, 7, 11]] = 0.0
    model._id_keep = keep
    try:
        assert content_only_rows(model, (data.items, data.timestamps)).tolist() == [3, 7, 11]
        out = tmp / "lifted"
        out.mkdir()
        document = {"metrics": {}, "config": {}, "summary": {"new_items": {"offset": 2.5}}}
        write_bundle(out, model, data, document, "float32")
    finally:
        model._id_keep = None
    # THEN the manifest names the rows, and serving scores them with the offset
    loaded = bundle.load(out)
    assert loaded.manifest["new_items"] == {"offset": 2.5, "rows": [3, 7, 11]}
    rec = Recommender(loaded)
    history = np.array([1, 2, 4, 5])
    rows = np.arange(1, data.n_items + 1)
    plain = rec.model.score_rows(rec.model.encode([history]).hidden[0], rows)
    ranked = rec.rank(history, rows, explain=False)
    got = {r.row: r.score for r in ranked.items}
    lifted = np.isin(rows, [3, 7, 11])
    assert np.allclose([got[r] for r in rows], plain + 2.5 * lifted, atol=1e-5)
    # AND the whole-catalog recommendation ranks by the same lifted scores
    top = rec.recommend(history).items
    expected = plain + 2.5 * lifted
    expected[np.isin(rows, history)] = -np.inf  # seen items are excluded by default
    assert [r.row for r in top] == rows[np.argsort(-expected, kind="stable")][: len(top)].tolist()
    # AND the gate scores production with the same lift (training.champion.Served)
    from training.champion import Served

    gate_scores = Served.of(loaded)([history])[0]
    assert np.allclose(gate_scores[rows], plain + 2.5 * lifted, atol=1e-5)
    # AND without an offset no row list is written: the rows are scored as before
    (tmp / "plain").mkdir()
    document["summary"]["new_items"]["offset"] = 0.0
    model._id_keep = keep
    try:
        write_bundle(tmp / "plain", model, data, document, "float32")
    finally:
        model._id_keep = None
    assert Recommender(bundle.load(tmp / "plain")).lift is None


def test_the_jobs_test_pass_lifts_the_served_models_rows_and_no_other_models():
    from training.evaluation import Evaluation, _variants

    ev = Evaluation(served="student")
    lift = content.RowLift(np.array([2]), 1.0)
    _variants(ev, {"teacher": None, "student": None, "student_plain": None}, {}, {}, lift)
    assert [v.lift for v in ev.variants["student"]] == [lift]
    assert all(v.lift is None for n in ("teacher", "student_plain") for v in ev.variants[n])
    scores = np.zeros((1, 4), np.float32)
    ev.variants["student"][0].apply(scores, [np.array([1])])
    assert scores.tolist() == [[0.0, 0.0, 1.0, 0.0]]
