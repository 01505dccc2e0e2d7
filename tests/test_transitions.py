"""Transition counts served beside the student (lmrec.transitions, training.hybrid): the
counts against a plain loop, the privacy floor, the one-pass weight choice against dense
scoring, the bundle's checks, and serving's exact top-k of score + boost on both paths."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from lmrec import bundle, transitions
from lmrec.recommend import Filters, Recommender
from lmrec.transitions import Transitions, recent_sums

from tests.conftest import synthetic_rows, write_csv
from tests.test_items_index import catalog_data, student_for
from training import hybrid
from training.bundle_writer import write_bundle
from training.config import ConfigError, DataConfig, from_hyperparameters
from training.data import load_interactions
from training.split import leave_one_out


def random_table(rng, n_items: int, per_row: int = 6) -> Transitions:
    rows = [
        np.sort(rng.choice(np.arange(1, n_items + 1), per_row, replace=False))
        for _ in range(n_items)
    ]
    cols = np.concatenate([np.zeros(0, np.int64), *rows])
    indptr = np.concatenate([[0, 0], np.cumsum([per_row] * n_items)]).astype(np.int64)
    counts = rng.integers(1, 9, len(cols)).astype(np.float32)
    return Transitions(indptr, cols, counts, weight=1.5, recent=3, decay=0.5)


def dense_boost(t: Transitions, history: np.ndarray) -> np.ndarray:
    """The definition, one history item at a time."""
    sums = np.zeros(t.n_items + 1)
    for age, item in enumerate(history[::-1][: t.recent]):
        lo, hi = t.indptr[item], t.indptr[item + 1]
        sums[t.cols[lo:hi]] += t.decay**age * t.counts[lo:hi]
    return t.weight * np.log1p(sums)


def test_boosts_match_the_definition():
    rng = np.random.default_rng(0)
    t = random_table(rng, 40)
    histories = [rng.choice(np.arange(1, 41), n, replace=False) for n in (1, 2, 5, 9)]
    scores = rng.standard_normal((4, 41)).astype(np.float32)
    boosted = t.add_to(scores.copy(), histories)
    for row, h in enumerate(histories):
        np.testing.assert_allclose(boosted[row] - scores[row], dense_boost(t, h), atol=1e-5)
    rows, items, _ = recent_sums(t.indptr, t.cols, t.counts, histories, t.recent, t.decay)
    assert len(set(zip(rows.tolist(), items.tolist(), strict=True))) == len(rows)  # one each


def split_of(tmp_path, rows):
    src = write_csv(tmp_path / "d.csv", ["user_id", "item_id", "timestamp"], rows)
    return leave_one_out(load_interactions(str(src), DataConfig(min_interactions=0, min_users=0)))


def test_a_pair_of_one_user_never_ships(tmp_path):
    # a -> b made by three users, a -> c by one: only a -> b is kept at min_users 2
    rows = []
    for u, seq in enumerate([["a", "b", "x", "y"], ["a", "b", "y", "x"], ["a", "b", "x", "z"]]):
        rows += [[f"u{u}", item, t] for t, item in enumerate(seq)]
    rows += [["u9", item, t] for t, item in enumerate(["a", "c", "z", "y"])]
    split = split_of(tmp_path, rows)
    ids = list(split.data.item_ids)
    row = {item: ids.index(item) + 1 for item in ids}
    table = hybrid.build(split, min_users=2, per_item=50)
    pairs = {
        (ids[a - 1], ids[int(c) - 1]): float(n)
        for a in range(1, len(ids) + 1)
        for c, n in zip(
            table.cols[table.indptr[a] : table.indptr[a + 1]],
            table.counts[table.indptr[a] : table.indptr[a + 1]],
            strict=True,
        )
    }
    assert pairs[("a", "b")] == 3.0 and ("a", "c") not in pairs
    assert all(n >= 2 for n in pairs.values())
    top1 = hybrid.build(split, min_users=2, per_item=1)
    assert np.diff(top1.indptr).max() == 1
    a = row["a"]
    assert top1.cols[top1.indptr[a]] == row["b"]  # the most common successor survives


def test_the_privacy_floor_is_enforced_by_the_config():
    with pytest.raises(ConfigError, match="transitions_min_users"):
        from_hyperparameters({"transitions_min_users": "1"})


@pytest.mark.parametrize("coarse", [False, True])
def test_the_one_pass_weight_choice_equals_dense_ranking(tmp_path, coarse):
    """Against every item scored densely; coarse scores (one decimal, as bf16 logits tie)
    check that ties are split as evaluation splits them, uniformly at random."""
    rows = synthetic_rows(n_users=120, n_items=60, length=10, seed=5)
    split = split_of(tmp_path, rows)
    table = hybrid.build(split, min_users=2, per_item=50)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((split.data.n_items + 1, 8)).astype(np.float32)

    def scores_of(history: np.ndarray) -> np.ndarray:  # any function of the history will do
        s = vectors @ vectors[history].mean(0)
        return np.round(s, 1) if coarse else s

    def scorer(histories):
        return np.stack([scores_of(h) for h in histories])

    evalset = split.evalset("valid")
    sums = hybrid.per_user_by_weight(scorer, table, split, evalset, np.arange(len(evalset)), 7).sum(
        0
    )
    for i, w in enumerate(hybrid.WEIGHTS):
        t = dataclasses.replace(table, weight=w)
        total = 0.0
        for u, p, target in zip(evalset.users, evalset.prefix_len, evalset.targets, strict=True):
            h = split.history(u, p)
            s = scores_of(h).astype(np.float64) + dense_boost(t, h)
            s[0] = -np.inf
            s[h] = -np.inf
            above, ties = int((s > s[target]).sum()), int((s == s[target]).sum()) - 1
            ranks = np.arange(above, above + ties + 1)  # equally likely
            total += float(np.where(ranks < 10, 1 / np.log2(ranks + 2), 0.0).mean())
        assert sums[i] == pytest.approx(total, abs=1e-9), w


@pytest.fixture(scope="module")
def boosted(tmp_path_factory):
    """The 3,000-item indexed bundle of test_items_index, with transitions at weight 2."""
    tmp = tmp_path_factory.mktemp("boosted")
    data = catalog_data(tmp)
    table = hybrid.build(leave_one_out(data), min_users=2, per_item=50, weight=2.0)
    out = tmp / "bundle"
    out.mkdir()
    doc = {"metrics": {}, "config": {}, "summary": {"transitions": {"min_users": 2}}}
    manifest = write_bundle(
        out,
        student_for(data, aligned=True),
        data,
        doc,
        "int8",
        ann_min_items=1000,
        transitions=table,
    )
    return out, manifest, data


def test_the_bundle_carries_and_verifies_the_table(boosted):
    out, manifest, _ = boosted
    assert transitions.FILE in manifest["files"] and manifest["transitions"]["weight"] == 2.0
    assert manifest["transitions"]["min_users"] == 2 and manifest["transitions"]["pairs"] > 0
    loaded = bundle.load(str(out))
    assert loaded.transitions is not None and loaded.transitions.weight == 2.0


def test_serving_returns_the_exact_top_k_of_score_plus_boost(boosted):
    out, _, data = boosted
    rec = Recommender.load(str(out))
    rec.index = None  # whole-table path: the boost is added to every score
    sparse = Recommender(rec.bundle)
    sparse.index = None
    rng = np.random.default_rng(2)
    for _ in range(30):
        history = rng.choice(np.arange(1, data.n_items + 1), 6, replace=False)
        f = Filters(k=10, explain=False)
        dense = rec.recommend(history, f).items
        enc = sparse.model.encode([history])
        allowed = sparse._allowed(history, f)
        top, values = sparse._rank(enc.hidden[0], allowed, 10)
        boosts = sparse._boosts([history], None)
        assert boosts is not None
        top, values = sparse._with_boost(enc.hidden[0], allowed, 10, top, values, boosts[0])
        assert [r.row for r in dense] == top.tolist()
        np.testing.assert_allclose([r.score for r in dense], values, rtol=1e-5, atol=1e-5)


def test_the_indexed_path_brings_boosted_items_and_honours_filters(boosted):
    out, _, data = boosted
    rec = Recommender.load(str(out))
    assert rec.index is not None
    assert rec.transitions is not None
    table = rec.transitions = dataclasses.replace(rec.transitions, weight=50.0)  # boost wins
    item = int(np.argmax(np.diff(table.indptr)))  # the item with the most successors
    successors = set(table.cols[table.indptr[item] : table.indptr[item + 1]].tolist())
    result = rec.recommend(np.asarray([item]), Filters(k=10, explain=False))
    assert len(result.items) == 10 and successors <= {r.row for r in result.items}
    banned = [data.item_ids[s - 1] for s in successors]
    kept = rec.recommend(np.asarray([item]), Filters(k=10, exclude_items=banned, explain=False))
    assert len(kept.items) == 10 and not successors & {r.row for r in kept.items}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, p: a.update(indptr=a["indptr"][:-1]), "indptr has"),
        (lambda a, p: a.update(indptr=a["indptr"].astype(np.int32)), "indptr must be int64"),
        (lambda a, p: a.update(cols=a["cols"] + 10_000), "outside the catalog"),
        (lambda a, p: a.update(cols=a["cols"].astype(np.uint64)), "cols int32 or int64"),
        (lambda a, p: a.update(cols=a["cols"].astype(np.float32)), "cols int32 or int64"),
        (lambda a, p: a.update(counts=a["counts"][:, None]), "one-dimensional"),
        (lambda a, p: a.update(counts=-a["counts"]), "finite, positive"),
        (lambda a, p: a.update(counts=a["counts"] * 1e30), "finite, positive"),
        (lambda a, p: p.update(weight=float("nan")), "parameters must be numbers"),
        (lambda a, p: p.update(weight=1e300), "parameters must be numbers"),
        (lambda a, p: p.update(recent="5"), "parameters must be numbers"),
        (lambda a, p: p.update(recent=True), "parameters must be numbers"),
        (lambda a, p: p.pop("recent"), "parameters must be numbers"),
    ],
)
def test_a_bad_table_is_refused_with_one_line(boosted, tmp_path, change, message):
    import shutil

    from safetensors.numpy import load_file, save_file

    src, _, _ = boosted
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    arrays = load_file(str(out / transitions.FILE))
    manifest = json.loads((out / bundle.MANIFEST).read_text())
    change(arrays, manifest["transitions"])
    save_file(arrays, str(out / transitions.FILE))
    path = out / transitions.FILE
    manifest["files"][transitions.FILE] = {
        "size": path.stat().st_size,
        "sha256": bundle.sha256_file(path),
    }
    (out / bundle.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(bundle.BundleError, match=message) as err:
        bundle.load(str(out))
    assert "\n" not in str(err.value)
