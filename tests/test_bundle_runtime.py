"""The bundle contract and the numpy runtime: parity with torch, verification, filters."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from lmrec import bundle
from lmrec.recommend import Filters, Recommender
from lmrec.student import NumpySASRec, left_pad

from tests.conftest import synthetic_rows, write_csv
from training.bundle_writer import quantize_items, write_bundle
from training.config import DataConfig, ModelConfig
from training.data import load_interactions
from training.model import SASRec


@pytest.fixture(scope="module")
def parity_case(tmp_path_factory):
    """A 2-block, 2-head model with non-trivial weights, written as a bundle."""
    tmp = tmp_path_factory.mktemp("parity")
    src = write_csv(
        tmp / "d.csv",
        ["user_id", "item_id", "timestamp"],
        synthetic_rows(n_users=60, n_items=300, length=30),
    )
    data = load_interactions(str(src), DataConfig(min_interactions=10, min_users=2))
    torch.manual_seed(0)
    model = SASRec(
        ModelConfig(
            n_items=data.n_items,
            d_model=32,
            n_blocks=2,
            n_heads=2,
            max_len=20,
            dropout=0.1,
            ffn_mult=2,
        )
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # far from init, so every path matters
    model.eval()
    out = tmp / "bundle"
    out.mkdir()
    doc = {"metrics": {}, "config": {"x": 1}}
    write_bundle(out, model, data, doc, "float32")
    return model, data, out


def histories(data, rng, n=40):
    lengths = [1, 2, 19, 20, 21, 50, *list(rng.integers(1, 60, size=n - 6))]
    return [rng.integers(1, data.n_items + 1, size=int(L)) for L in lengths]


def test_numpy_student_matches_torch(parity_case):
    model, data, out = parity_case
    loaded = bundle.load(out)
    runtime = NumpySASRec(loaded.weights, loaded.config)
    hs = histories(data, np.random.default_rng(1))
    with torch.no_grad():
        x = torch.from_numpy(runtime.pad(hs))
        expected = model.score(x).numpy()
    got = runtime(hs)
    assert got.shape == expected.shape == (len(hs), data.n_items + 1)
    np.testing.assert_allclose(got[:, 1:], expected[:, 1:], atol=1e-4, rtol=0)
    for a, b in zip(got, expected, strict=True):
        assert list(np.argsort(-a[1:])[:10]) == list(np.argsort(-b[1:])[:10])
    # one at a time (no padding) equals the batch
    np.testing.assert_allclose(runtime([hs[3]])[0, 1:], got[3, 1:], atol=1e-5)


def test_scoring_shortcut_equals_the_training_path(parity_case):
    """score() runs the last block for the newest position only; training runs it for every
    position. Both must give the newest position the same hidden state and scores."""
    model, data, _ = parity_case
    hs = histories(data, np.random.default_rng(2))
    x = torch.from_numpy(left_pad(hs, model.cfg.max_len))
    with torch.no_grad():
        every = model.encode(x)[:, -1]
        newest = model.encode(x, last_only=True)
        scores = model.score(x)
    assert newest.shape == (len(hs), 1, model.cfg.d_model)
    torch.testing.assert_close(newest[:, 0], every, atol=1e-5, rtol=0)
    assert torch.isneginf(scores[:, 0]).all()
    torch.testing.assert_close(scores[:, 1:], model.catalog_logits(every), atol=1e-4, rtol=0)


def test_quantized_item_tables_stay_close(parity_case):
    model, _, _ = parity_case
    table = model.item_emb.weight.detach().numpy()
    from lmrec.student import dequantize_items

    for dtype, tol in (("float16", 2e-3), ("int8", 2e-2)):
        back = dequantize_items(quantize_items(table, dtype))
        assert back.dtype == np.float32
        assert np.abs(back - table).max() <= tol * np.abs(table).max()


def edit_manifest(d, change) -> None:
    manifest = json.loads((d / "manifest.json").read_text())
    change(manifest)
    (d / "manifest.json").write_text(json.dumps(manifest))


def copy_bundle(src, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: (d / "student.safetensors").write_bytes(
                (d / "student.safetensors").read_bytes()[:-10]
            ),
            "truncated or replaced",
        ),
        (
            lambda d: (d / "popularity.npy").write_bytes(
                bytes([(d / "popularity.npy").read_bytes()[0] ^ 1])
                + (d / "popularity.npy").read_bytes()[1:]
            ),
            "fails its sha256 check",
        ),
        (lambda d: (d / "items.safetensors").unlink(), "items.safetensors is missing"),
        (
            lambda d: (d / "manifest.json").write_text(
                json.dumps({**json.loads((d / "manifest.json").read_text()), "schema_version": 99})
            ),
            "unsupported bundle schema_version 99",
        ),
        (
            lambda d: (d / "manifest.json").write_text("{not json"),
            "manifest.json is not valid JSON",
        ),
        (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    ],
    ids=[
        "truncated",
        "checksum",
        "missing-file",
        "schema-version",
        "manifest-not-json",
        "no-manifest",
    ],
)
def test_bad_bundles_are_refused(parity_case, tmp_path, damage, message):
    d = copy_bundle(parity_case[2], tmp_path)
    damage(d)
    with pytest.raises(bundle.BundleError, match=message):
        bundle.load(d)


def test_recommendations_from_a_trained_bundle(trained_bundle):
    rec = Recommender.load(str(trained_bundle))
    manifest = rec.bundle.manifest
    assert manifest["catalog"]["category_column"] == "genres"
    assert "student" in manifest["metrics"] and manifest["model_version"]
    history = rec.catalog.rows(["50", "172", "181", "1", "98", "174"])[0]  # the bundle has no users
    result = rec.recommend(history, Filters(k=10))
    assert result.strategy == "personalized" and len(result.items) == 10
    ids = [r.item_id for r in result.items]
    seen = {rec.catalog.item_ids[i - 1] for i in history}
    assert not set(ids) & seen  # seen items excluded
    assert all(r.reason in seen for r in result.items)  # reasons come from the history
    scores = [r.score for r in result.items]
    assert scores == sorted(scores, reverse=True)

    # category include / exclude and explicit exclusions
    drama = rec.recommend(
        history, Filters(k=5, include_categories=["Drama"], exclude_items=[ids[0]])
    )
    for r in drama.items:
        assert "Drama" in rec.catalog.fields(r.row)["genres"] and r.item_id != ids[0]
    no_drama = rec.recommend(history, Filters(k=20, exclude_categories=["Drama"]))
    assert all("Drama" not in rec.catalog.fields(r.row)["genres"] for r in no_drama.items)

    # an empty history falls back to popular items
    cold = rec.recommend(np.empty(0, np.int64), Filters(k=3))
    assert cold.strategy == "popular" and len(cold.items) == 3
    pops = rec.bundle.popularity
    assert cold.items[0].row == int(np.argmax(pops[1:]) + 1)

    # unknown ids are reported, known ones kept in order
    rows, unknown = rec.catalog.rows([ids[0], "no-such-movie", ids[1]])
    assert unknown == ["no-such-movie"] and len(rows) == 2

    similar = rec.similar(ids[0], k=5)
    assert len(similar) == 5 and ids[0] not in [s.item_id for s in similar]
    assert rec.similar("no-such-movie") is None


def test_batch_equals_single_requests(trained_bundle):
    rec = Recommender.load(str(trained_bundle))
    rng = np.random.default_rng(0)
    hs = [rng.integers(1, len(rec.catalog.item_ids) + 1, size=n) for n in (1, 3, 7, 20, 40)]
    hs.append(np.empty(0, np.int64))
    batch = rec.recommend_many(hs, [Filters(k=10)] * len(hs))
    for h, res in zip(hs, batch, strict=True):
        single = rec.recommend(h, Filters(k=10))
        assert [r.item_id for r in res.items] == [r.item_id for r in single.items]


def test_the_served_record_names_the_model_and_its_own_weights_file(parity_case, tmp_path):
    model, data, _ = parity_case
    # GIVEN a job whose better small model is student_plain, beside the distilled student's
    # own weights (the job's record under student.safetensors)
    out = tmp_path / "plain"
    out.mkdir()
    (out / "student.safetensors").write_bytes(b"the distilled student's record")
    served = {"model": "student_plain", "transitions_weight": 0.0}
    doc = {"metrics": {}, "config": {"x": 2}, "summary": {"served": served}}
    # WHEN the bundle is written
    manifest = write_bundle(out, model, data, doc, "float32")
    # THEN the manifest names the model, its weight and its file; the student's file is kept
    assert manifest["served"] == {**served, "weights": "student_plain.safetensors"}
    assert (out / "student.safetensors").read_bytes() == b"the distilled student's record"
    assert bundle.served_metric(manifest) == "student_plain"
    # ... and the loader reads the weights the manifest names, checksummed
    loaded = bundle.load(out)
    assert set(loaded.weights) == set(bundle.load(parity_case[2]).weights)
    (out / "student_plain.safetensors").write_bytes(b"damaged")
    with pytest.raises(bundle.BundleError, match=r"student_plain\.safetensors"):
        bundle.load(out)


def test_a_schema_2_bundle_still_loads_from_student_safetensors(parity_case, tmp_path):
    # GIVEN a bundle as the previous writer left it (production, or a rollback target)
    old = copy_bundle(parity_case[2], tmp_path)
    manifest = json.loads((old / bundle.MANIFEST).read_text())
    manifest.pop("served")
    manifest.update(schema_version=2, served_model="student+transitions")
    (old / bundle.MANIFEST).write_text(json.dumps(manifest))
    # THEN it loads from student.safetensors and the gate reads its label as before
    assert bundle.load(old).weights
    assert bundle.served_metric(manifest) == "student+transitions"


@pytest.mark.parametrize(
    "served",
    [
        None,
        "student+transitions",
        {"model": "student", "transitions_weight": -1.0, "weights": "student.safetensors"},
        {"model": "student", "transitions_weight": True, "weights": "student.safetensors"},
        {"model": "student", "transitions_weight": 0, "weights": "../student.safetensors"},
        {"model": "student", "transitions_weight": 0, "weights": "student.npy"},
        {"model": "", "transitions_weight": 0, "weights": "student.safetensors"},
    ],
)
def test_a_bad_served_record_is_refused(parity_case, tmp_path, served):
    bad = copy_bundle(parity_case[2], tmp_path)
    manifest = json.loads((bad / bundle.MANIFEST).read_text())
    manifest["served"] = served
    (bad / bundle.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(bundle.BundleError, match="served"):
        bundle.load(bad)


def test_the_metrics_label_of_a_served_record():
    assert bundle.metric_label({"model": "student_plain", "transitions_weight": 8.0}) == (
        "student_plain+transitions"
    )
    assert bundle.metric_label({"model": "student", "transitions_weight": 0}) == "student"
