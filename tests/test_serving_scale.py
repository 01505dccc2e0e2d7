"""benchmarks/serving_scale.py --content: the bundle with the content part is the one a
trained job writes (the real writer, spec and table), serves the same item vectors as the
bundle without it, and scores live items; so the before/after figures differ by the content
part alone."""

from __future__ import annotations

import numpy as np
import pytest
from lmrec import content, liveitems
from lmrec.bundle import load
from lmrec.recommend import Filters, Recommender
from lmrec.student import dequantize_items

from benchmarks.serving_scale import build, live_records


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    plain, with_content = root / "S-int8", root / "S-int8-content"
    build("S", plain, "int8", transitions_weight=0.0)
    record = build("S", with_content, "int8", transitions_weight=0.0, content=True)
    return plain, with_content, record


def test_content_bundle_is_what_training_writes(bundles):
    _, with_content, record = bundles
    b = load(with_content)
    spec = content.spec_from_manifest(b.manifest)
    assert spec is not None
    assert (spec.text, spec.categorical, tuple(spec.numeric)) == (
        ("title",),
        ("category",),
        ("price",),
    )
    assert b.weights["content.weight"].dtype == np.float16
    assert b.weights["content.weight"].shape == (spec.n_buckets, 48)
    assert content.new_item_offset(b.manifest) == 0.0 and "new_items" in b.manifest
    assert record["content"]["n_buckets"] == spec.n_buckets


def test_both_bundles_serve_the_same_items(bundles):
    plain, with_content, _ = bundles
    a, b = load(plain), load(with_content)
    assert "content.weight" not in a.weights and "content" not in a.manifest
    ta, tb = dequantize_items(a.weights), dequantize_items(b.weights)
    step = np.abs(ta).max(1, keepdims=True) / 127  # one int8 step per row
    assert (np.abs(ta - tb) <= step + 1e-6).all()
    ra, rb = Recommender.load(plain), Recommender.load(with_content)
    history = np.arange(1, 11, dtype=np.int64)
    top = [[r.item_id for r in rec.recommend(history, Filters(k=10)).items] for rec in (ra, rb)]
    assert len(set(top[0]) & set(top[1])) >= 9


def test_live_items_are_scored_only_with_the_content_part(bundles):
    plain, with_content, _ = bundles
    records = live_records(50)
    assert not liveitems.build(Recommender.load(plain), records, {}).scored
    overlay = liveitems.build(Recommender.load(with_content), records, {})
    assert overlay.scored and overlay.vectors is not None
    assert overlay.vectors.shape == (50, 48) and np.abs(overlay.vectors).sum(1).min() > 0
