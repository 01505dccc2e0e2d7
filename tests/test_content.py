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


def _token_features(spec: content.ContentSpec, row: dict) -> dict[int, float]:
    """featurise's definition, token by token: each column's tokens hashed, 1/sqrt(count)."""
    out: dict[int, float] = {}
    for column in spec.columns:
        if row.get(column) is None:
            continue
        text = str(row[column])
        if column in spec.numeric:
            tokens = content.numeric_token(text, spec.numeric[column])
        elif column in spec.categorical:
            tokens = content.categorical_tokens(text)
        else:
            tokens = content.text_tokens(text)
        for t in tokens:
            b = content._bucket(column, t, spec.n_buckets)
            out[b] = out.get(b, 0.0) + 1.0 / np.sqrt(len(tokens))
    return out


def test_featurise_is_its_token_definition_on_hostile_and_repeated_text():
    """GIVEN titles with repeated, unicode, empty and very long words WHEN featurised (with
    the per-word bucket cache) THEN indices and weights are those of hashing every token."""
    rng = np.random.default_rng(2)
    words = ["Heat", "heat", "日本語", "🎬", "\ud800x", "a", "Ǆemo", "x" * 300, "straße", "STRASSE"]
    rows = [
        {
            "title": " ".join(rng.choice(words, int(rng.integers(0, 12)))),
            "genres": "a|b| ",
            "year": y,
        }
        for y in ("1990", "", "nan", "2001", "x") * 60
    ]
    rows += [{"title": "y" * 100_000}, {"title": ""}, {}]
    spec = _spec()
    f = content.featurise(spec, rows)
    for i, row in enumerate(rows):
        want = _token_features(spec, row)
        lo, hi = f.offsets[i], f.offsets[i + 1]
        assert f.indices[lo:hi].tolist() == sorted(want)
        np.testing.assert_array_equal(f.weights[lo:hi], np.float32([want[b] for b in sorted(want)]))


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


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_vectors_match_the_per_feature_sum_over_many_items(dtype):
    """GIVEN thousands of items, empty ones first, last and between, features repeating
    across items WHEN vectors sums them THEN each is the sum of its weighted rows (the
    per-feature np.add.at it replaced), to float32 rounding (the summation order differs)."""
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(300)]
    rows: list[dict] = [{}]
    for i in range(3_000):
        n = int(rng.integers(0, 6))
        rows.append({"title": " ".join(rng.choice(words, n)), "year": str(1950 + i % 70)})
        if i % 97 == 0:
            rows.append({})
        if i == 1_000:
            rows += [{}] * 300  # a whole chunk of items without features
    rows.append({})
    f = content.featurise(_spec(), rows)
    table = rng.standard_normal((4096, 16)).astype(dtype)
    want = np.zeros((len(f), 16), np.float32)
    per_row = np.repeat(np.arange(len(f)), np.diff(f.offsets))
    np.add.at(want, per_row, table[f.indices].astype(np.float32) * f.weights[:, None])
    got = content.vectors(f, table)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert not got[0].any() and not got[-1].any()


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
