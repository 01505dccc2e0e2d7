"""The compact item catalog (lmrec.items), the IVF index (lmrec.ivf) and the ranking paths:
lookups, filters, k returned, recall against exact search, and parity with the previous
implementation (the whole float32 table scored, masked, top-k)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from lmrec import bundle, items, ivf
from lmrec.recommend import Filters, Recommender
from lmrec.student import NumpySASRec, dequantize_items

from benchmarks.serving_scale import history_encoder
from tests.conftest import synthetic_rows, write_csv
from training.bundle_writer import quantize_items, requantize, write_bundle
from training.config import DataConfig, ModelConfig
from training.data import load_interactions
from training.model import SASRec

IDS = ["i1", "ünï/cødé", "a b", "x" * 200, "42", "0042"]


def test_catalog_round_trip(tmp_path):
    columns = {
        "title": ["One", "Two", None, "Four", "Five", "Six"],
        "genres": [["A", "B"], [], ["B"], ["A", "A"], ["C"], []],
        "year": [1999, 2000, 2001, None, 2003, 2004],
    }
    items.write(tmp_path / "items.safetensors", IDS, columns, "genres")
    cat = items.read(tmp_path / "items.safetensors")
    assert list(cat.item_ids) == IDS and cat.n_items == 6
    assert [cat.row(i) for i in IDS] == [1, 2, 3, 4, 5, 6]
    assert cat.row("0042 ") is None and cat.row("") is None
    rows, unknown = cat.rows(["42", "nope", "ünï/cødé", "42"])
    assert rows.tolist() == [5, 2, 5] and unknown == ["nope"]
    assert cat.fields(1) == {"title": "One", "genres": ["A", "B"], "year": 1999}
    assert list(cat.fields(3)) == ["title", "genres", "year"]  # the catalog's column order
    assert cat.fields(4) == {"title": "Four", "genres": ["A", "A"], "year": None}
    assert cat.category_rows("A").tolist() == [1, 4] and cat.category_rows("B").tolist() == [1, 3]
    assert cat.category_rows("nope").tolist() == [] and not cat.has_category("nope")


def test_hash_collisions_are_settled_by_the_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(items, "id_hash", lambda raw: len(raw) % 2)  # everything collides
    items.write(tmp_path / "c.safetensors", IDS, {}, None)
    cat = items.read(tmp_path / "c.safetensors")
    assert [cat.row(i) for i in IDS] == [1, 2, 3, 4, 5, 6]
    assert cat.rows([*reversed(IDS), "zz"])[0].tolist() == [6, 5, 4, 3, 2, 1]
    assert cat.rows(["zz"])[1] == ["zz"] and cat.fields(2) == {}


def test_repeated_ids_are_refused(tmp_path):
    items.write(tmp_path / "d.safetensors", ["a", "b", "a"], {}, None)
    with pytest.raises(ValueError, match="item ids repeat"):
        items.read(tmp_path / "d.safetensors")


def clustered_table(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Items around topic centres, norms growing with a Zipf popularity: the shape trained
    item embeddings take (a random Gaussian table has no structure for any index to use)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(4, n // 60), d))
    topic = rng.integers(0, len(centres), n)
    norms = 0.5 + 0.15 * np.log(rng.zipf(1.3, n).clip(1, 1000))
    table = (centres[topic] + 0.5 * rng.standard_normal((n, d))) / np.sqrt(d) * norms[:, None]
    return np.vstack([np.zeros((1, d)), table]).astype(np.float32)


def catalog_data(tmp):
    rows = synthetic_rows(n_users=300, n_items=3000, length=12, seed=3)
    src = write_csv(tmp / "d.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(src), DataConfig(min_interactions=5, min_users=2))
    genres = [
        "Rare" if i % 500 == 0 else ("Drama|Comedy" if i % 3 else "Horror")
        for i in range(data.n_items)
    ]
    data.catalog = pd.DataFrame(
        {"title": [f"T{i}" for i in data.item_ids], "genres": genres},
        index=pd.Index(data.item_ids, name="item_id"),
    )
    return data


def student_for(data, aligned: bool) -> SASRec:
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=data.n_items, d_model=16, n_blocks=1, n_heads=1, max_len=10))
    if aligned:
        with torch.no_grad():
            model.item_emb.weight.copy_(torch.from_numpy(clustered_table(data.n_items, 16)))
        history_encoder(model)
    return model.eval()


def test_no_index_when_it_would_not_pay(tmp_path):
    """An untrained model (a Gaussian table, queries that point anywhere) needs most lists
    probed: the writer then leaves the index out and serving scores the whole table."""
    data = catalog_data(tmp_path)
    out = tmp_path / "bundle"
    out.mkdir()
    doc = {"metrics": {}, "config": {}}
    manifest = write_bundle(
        out, student_for(data, aligned=False), data, doc, "int8", ann_min_items=1000
    )
    record = manifest["model"]["item_index"]
    assert record["kind"] == "none" and "whole-table scoring" in record["reason"]
    assert ivf.INDEX_FILE not in manifest["files"]
    rec = Recommender.load(str(out))
    assert rec.index is None and len(rec.recommend(np.asarray([1, 2]), Filters(k=7)).items) == 7


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A 3,000-item bundle with a catalog and an IVF index (written from 1,000 items on)."""
    tmp = tmp_path_factory.mktemp("indexed")
    data = catalog_data(tmp)
    out = tmp / "bundle"
    out.mkdir()
    doc = {"metrics": {}, "config": {}}
    model = student_for(data, aligned=True)
    manifest = write_bundle(out, model, data, doc, "int8", ann_min_items=1000)
    return out, manifest, data


def exact_twin(rec: Recommender) -> Recommender:
    """The same bundle ranked without its index."""
    twin = Recommender(rec.bundle)
    twin.index = None
    return twin


def test_the_index_is_written_verified_and_calibrated(indexed):
    out, manifest, data = indexed
    record = manifest["model"]["item_index"]
    assert ivf.INDEX_FILE in manifest["files"] and record["kind"] == "ivf"
    assert record["recall@10"] >= 0.97 and 1 <= record["n_probe"] <= record["n_lists"]
    loaded = bundle.load(out)
    assert loaded.index is not None and sorted(loaded.index.rows.tolist()) == list(
        range(1, data.n_items + 1)
    )
    assert loaded.weights["item_emb.weight"].dtype == np.int8  # kept int8 in memory


def test_indexed_ranking_honours_every_filter_and_returns_k(indexed):
    out, _, data = indexed
    rec = Recommender.load(str(out))
    rec.exact_below = 100  # probe this small catalog as a large one would be
    rng = np.random.default_rng(0)
    for _ in range(20):
        history = rng.integers(1, data.n_items + 1, size=8)
        exclude = [rec.catalog.item_ids[r - 1] for r in rng.integers(1, data.n_items + 1, 5)]
        res = rec.recommend(
            history, Filters(k=25, exclude_items=exclude, exclude_categories=["Horror"])
        )
        got = [r.row for r in res.items]
        assert len(got) == 25 and len(set(got)) == 25
        assert not set(got) & set(history.tolist())
        assert not {r.item_id for r in res.items} & set(exclude)
        assert all("Horror" not in rec.catalog.fields(r)["genres"] for r in got)
        # a rare category: the exact path over the allowed rows, still k when k exist
        rare = rec.recommend(history, Filters(k=10, include_categories=["Rare"]))
        n_rare = len(set(rec.catalog.category_rows("Rare").tolist()) - set(history.tolist()))
        assert len(rare.items) == min(10, n_rare)
        assert all(rec.catalog.fields(r.row)["genres"] == ["Rare"] for r in rare.items)
    # everything excluded but 3 items: 3 come back
    keep = rec.catalog.category_rows("Rare")[:3]
    everything = [i for i in rec.catalog.item_ids if rec.catalog.row(i) not in set(keep.tolist())]
    few = rec.recommend(
        np.asarray([1]), Filters(k=10, exclude_items=everything, exclude_seen=False)
    )
    assert sorted(r.row for r in few.items) == sorted(keep.tolist())


def test_indexed_recall_against_exact(indexed):
    out, _, data = indexed
    rec = Recommender.load(str(out))
    rec.exact_below = 100
    exact = exact_twin(rec)
    rng = np.random.default_rng(1)
    hits = hits_similar = 0
    n = 100
    for _ in range(n):
        history = rng.integers(1, data.n_items + 1, size=int(rng.integers(1, 10)))
        approx = {r.row for r in rec.recommend(history, Filters(k=10)).items}
        hits += len(approx & {r.row for r in exact.recommend(history, Filters(k=10)).items})
        item = rec.catalog.item_ids[int(rng.integers(data.n_items))]
        hits_similar += len(
            {r.row for r in rec.similar(item)} & {r.row for r in exact.similar(item)}
        )
    assert hits / (10 * n) >= 0.95 and hits_similar / (10 * n) >= 0.95


def previous_ranking(loaded: bundle.Bundle, history: np.ndarray, f: Filters) -> list[int]:
    """The ranking as the runtime computed it before the compact catalog: the item table
    dequantized to float32, a transposed copy, every row scored, masks, argpartition."""
    table = dequantize_items(loaded.weights)
    model = NumpySASRec(loaded.weights, loaded.config)
    scores = model.encode([history]).hidden @ np.ascontiguousarray(table.T)
    scores = scores[0]
    scores[0] = -np.inf
    allowed = np.ones(len(scores), bool)
    allowed[0] = False
    for cat in f.include_categories:
        allowed &= np.isin(np.arange(len(scores)), loaded.catalog.category_rows(cat))
    for cat in f.exclude_categories:
        allowed[loaded.catalog.category_rows(cat)] = False
    if f.exclude_seen:
        allowed[history] = False
    scores = np.where(allowed, scores, -np.inf)
    k = min(f.k, int(allowed.sum()))
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")].tolist()


def movielens_histories(rec: Recommender, interactions) -> dict[str, np.ndarray]:
    """Each user's history from the sample's own file (oldest first), as catalog rows."""
    df = pd.read_csv(interactions, dtype={"user_id": str, "item_id": str})
    df = df.sort_values(["user_id", "timestamp"], kind="stable")
    return {
        user: rec.catalog.rows(group["item_id"].tolist())[0]
        for user, group in df.groupby("user_id", sort=True)
    }


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_movielens_recommendations_are_unchanged(trained_bundle, ml100k_small, tmp_path, dtype):
    """Every user of the MovieLens sample gets the same items, in the same order, as the
    previous implementation computed them from the same model and history."""
    path = trained_bundle if dtype == "float32" else tmp_path / "q"
    if dtype != "float32":
        requantize(trained_bundle, path, dtype)
    rec = Recommender.load(str(path))
    rec.transitions = None  # the model's own ranking (the boost is tested in test_transitions)
    histories = movielens_histories(rec, ml100k_small[0])
    assert len(histories) == 80
    for filters in (
        Filters(k=10),
        Filters(k=5, include_categories=["Drama"]),
        Filters(k=20, exclude_categories=["Comedy"]),
    ):
        for user, history in histories.items():
            got = [r.row for r in rec.recommend(history, filters).items]
            assert got == previous_ranking(rec.bundle, history, filters), user


def rewrite(bundle_dir, name, arrays, metadata) -> None:
    """Replace a file with valid safetensors of other content, checksums updated: a writer
    bug that verification alone would let through."""
    import hashlib
    import json

    from safetensors.numpy import save_file

    save_file(arrays, str(bundle_dir / name), metadata=metadata)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    raw = (bundle_dir / name).read_bytes()
    manifest["files"][name] = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        (
            bundle.ITEMS,
            lambda a, m: a.update(id_hash_rows=np.ones_like(a["id_hash_rows"])),
            "not a permutation",
        ),
        (bundle.ITEMS, lambda a, m: m.update(format="other/9"), "unknown item file format"),
        (bundle.ITEMS, lambda a, m: a.update(id_hash=a["id_hash"][::-1].copy()), "not sorted"),
        (ivf.INDEX_FILE, lambda a, m: a.update(rows=a["rows"] + 5), "outside the catalog"),
        (ivf.INDEX_FILE, lambda a, m: a.update(offsets=a["offsets"][:-1].copy()), "offsets"),
    ],
    ids=["hash-rows", "format", "unsorted", "index-rows", "index-offsets"],
)
def test_inconsistent_item_files_are_refused(indexed, tmp_path, name, damage, message):
    import shutil

    from safetensors import safe_open

    src, _, _ = indexed
    dst = tmp_path / "b"
    shutil.copytree(src, dst)
    with safe_open(str(dst / name), framework="np") as fh:
        metadata = dict(fh.metadata() or {})
        arrays = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
    damage(arrays, metadata)
    rewrite(dst, name, arrays, metadata)
    with pytest.raises(bundle.BundleError, match=message):
        bundle.load(dst)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_tables_score_in_their_stored_precision(monkeypatch, dtype):
    """Whole-table scores (chunk by chunk), candidate scores, embeddings and norms from the
    stored table equal those of the table dequantized to float32 once, as before."""
    import lmrec.student as student_mod

    monkeypatch.setattr(student_mod, "SCORE_CHUNK", 64)  # several chunks and a partial one
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=300, d_model=16, n_blocks=1, n_heads=2, max_len=10))
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    weights.update(quantize_items(weights.pop("item_emb.weight"), dtype))
    runtime = NumpySASRec(weights, {**model.cfg.__dict__})
    assert runtime.table.dtype == np.dtype(dtype)  # no float32 copy kept
    table = dequantize_items(weights)
    hidden = rng.standard_normal((3, 16)).astype(np.float32)
    scores = runtime.score(hidden)
    np.testing.assert_allclose(scores[:, 1:], (hidden @ table.T)[:, 1:], rtol=1e-5, atol=1e-5)
    assert np.isneginf(scores[:, 0]).all()
    rows = rng.integers(1, 301, size=40)
    np.testing.assert_allclose(
        runtime.score_rows(hidden[0], rows), table[rows] @ hidden[0], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        runtime.embed(rows.reshape(4, 10)), table[rows].reshape(4, 10, 16), rtol=1e-6
    )
    np.testing.assert_allclose(runtime.item_norms(), np.linalg.norm(table, axis=1), rtol=1e-5)
