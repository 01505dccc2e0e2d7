"""The content featuriser shared by training and serving (lmrec.content)."""

from __future__ import annotations

import numpy as np
import pytest
from lmrec import content


def _spec() -> content.ContentSpec:
    return content.ContentSpec(
        text=("title",), categorical=("genres",), numeric={"year": (1980.0, 1995.0)}, n_buckets=4096
    )


def test_a_row_is_a_weighted_bag_and_kinds_hash_apart():
    f = content.featurise(
        _spec(), [{"title": "Toy Story", "genres": "Animation|Comedy", "year": "1995"}]
    )
    assert len(f) == 1 and f.offsets.tolist() == [0, len(f.indices)]
    assert np.all(np.diff(f.indices) > 0)  # sorted, merged
    # each column's weights sum to sqrt(count): title: 2 words, 1 bigram, 3 + 5 trigrams
    assert f.weights.sum() == pytest.approx(np.sqrt(11) + np.sqrt(2) + 1.0, rel=1e-5)


def test_same_text_same_features_and_unseen_words_share_trigrams():
    spec = _spec()
    f = content.featurise(spec, [{"title": "Stories"}, {"title": "Storys"}, {"title": "Stories"}])
    rows = [set(f.indices[f.offsets[i] : f.offsets[i + 1]].tolist()) for i in range(3)]
    assert rows[0] == rows[2]
    assert len(rows[0] & rows[1]) >= 3  # "<st", "sto", "tor"


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "x" * 100_000,
        "日本語のタイトル",
        "emoji 🎬🎥",
        "\ud800 lone surrogate",
        "a|b|",
        "NaN",
    ],
)
def test_hostile_values_featurise_without_error(value):
    f = content.featurise(_spec(), [{"title": value, "genres": value, "year": value}])
    assert len(f) == 1 and np.isfinite(f.weights).all()
    assert (f.indices >= 0).all() and (f.indices < 4096).all()


def test_vectors_are_the_weighted_sum_of_table_rows():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((4096, 8)).astype(np.float16)
    f = content.featurise(_spec(), [{"title": "Heat"}, {}, {"genres": "Drama", "year": "1970"}])
    v = content.vectors(f, table)
    for i in range(3):
        lo, hi = f.offsets[i], f.offsets[i + 1]
        want = (table[f.indices[lo:hi]].astype(np.float32) * f.weights[lo:hi, None]).sum(0)
        np.testing.assert_allclose(v[i], want, rtol=1e-5, atol=1e-6)
    assert not v[1].any()


def test_infer_spec_reads_the_movielens_columns():
    spec = content.infer_spec(
        {
            "title": ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Heat"],
            "release_year": ["1995", "1995", "1995", "1995", "", "1995"],
            "genres": ["Animation|Comedy", "Action", "Thriller", "Comedy", "Crime|Drama", "Action"],
        }
    )
    assert spec.text == ("title",) and spec.categorical == ("genres",)
    assert list(spec.numeric) == ["release_year"]
    again = content.ContentSpec.from_json(spec.to_json())
    assert again == spec


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"n_buckets": 0},
        {"numeric": {"y": [3, 1]}},
        {"text": ["a"], "categorical": ["a"]},
        {"numeric": {"y": ["x"]}},
    ],
)
def test_malformed_specs_are_refused_with_a_line(raw):
    with pytest.raises(ValueError, match="content spec"):
        content.ContentSpec.from_json(raw)
