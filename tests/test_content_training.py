"""Item content in training: the torch EmbeddingBag agrees with the numpy runtime
(lmrec.content.vectors) on the one featuriser's output, the model combines id and content
parts as the bundle contract says, and a catalog-less job is unchanged."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch
from lmrec import content

from training.config import ConfigError, DataConfig, ModelConfig
from training.data import Interactions
from training.item_content import ItemContent, item_content, parse_overrides
from training.model import SASRec


def _hostile_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Unicode of several scripts, empty fields, very long texts, numbers, '|' lists."""
    rng = random.Random(seed)
    alphabet = (
        "abcxyz ÄÖüßéñ日本語テキスト Ελληνικά русский 🙂🎬 \t\n|,.;'\"\\ 0123456789 ﬁ ＡＢＣ \u200b"
    )
    rows = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            title = ""
        elif kind == 1 and i % 30 == 1:  # long texts (cut at MAX_TEXT_CHARS): 1 row in 30
            title = "".join(rng.choice(alphabet) for _ in range(rng.randint(3000, 6000)))
        elif kind == 2:
            title = str(rng.uniform(-1e6, 1e6))
        else:
            title = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
        genres = "|".join(
            rng.choice(["Action", "Comedy", " ", "", "Sci-Fi", "日本"])
            for _ in range(rng.randint(0, 70))
        )
        year = rng.choice(["1995", "", "abc", "nan", "inf", "-3.5", str(rng.randint(1900, 2030))])
        rows.append({"title": title, "genres": genres, "year": year})
    return rows


def test_embedding_bag_equals_numpy_vectors_on_hostile_strings():
    """Parity: for a few thousand rows the model's content part (torch EmbeddingBag fed with
    featurise's CSR) equals lmrec.content.vectors on the same table, float32."""
    spec = content.ContentSpec(
        text=("title",),
        categorical=("genres",),
        numeric={"year": (1950.0, 1980.0, 1995.0)},
        n_buckets=4096,
    )
    rows = _hostile_rows(2400)
    features = content.featurise(spec, [{}, *rows])
    torch.manual_seed(0)
    model = SASRec(
        ModelConfig(n_items=len(rows), d_model=16, n_blocks=1, n_heads=1, max_len=8),
        ItemContent(spec, features, id_dropout=0.0),
    ).eval()
    assert model.content is not None
    table = model.content.weight.detach().numpy()
    expected = content.vectors(features, table)
    ids = torch.arange(len(rows) + 1)
    with torch.no_grad():
        gathered = model._content_of(ids).numpy()
        whole = (model.item_table() - model.item_emb.weight).numpy()
    np.testing.assert_allclose(gathered, expected, atol=1e-5)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    assert np.abs(expected[1:]).sum(1).min() >= 0  # every row computed, padding zero
    assert not expected[0].any()
    # and one new row featurised alone (as serving does) gives the same vector
    alone = content.vectors(content.featurise(spec, [rows[7]]), table)
    np.testing.assert_allclose(alone[0], expected[8], atol=1e-5)


def _data(catalog: pd.DataFrame | None, n_items: int = 6) -> Interactions:
    ids = np.array([str(i) for i in range(1, n_items + 1)])
    return Interactions(
        user_ids=np.array(["u"]),
        item_ids=ids,
        offsets=np.array([0, n_items]),
        items=np.arange(1, n_items + 1),
        timestamps=np.arange(n_items, dtype=np.float64),
        fingerprint="sha256:x",
        catalog=None if catalog is None else catalog.reindex(pd.Index(ids, name="item_id")),
    )


CATALOG = pd.DataFrame(
    {
        "title": ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", None],
        "genres": ["Animation|Comedy", "Action", "Thriller", "Action|Comedy", "Crime", ""],
        "release_year": ["1995", "1995", "1995", "1995", "", "1996"],
    },
    index=pd.Index([str(i) for i in range(1, 7)], name="item_id"),
)


def test_without_catalog_or_off_no_content():
    assert item_content(_data(None), DataConfig()) is None
    assert item_content(_data(CATALOG), DataConfig(content="off")) is None
    with pytest.raises(ConfigError, match="needs an item catalog"):
        item_content(_data(None), DataConfig(content="on"))
    skip_all = "title:skip,genres:skip,release_year:skip"
    assert item_content(_data(CATALOG), DataConfig(content_columns=skip_all)) is None


def test_inferred_kinds_and_overrides():
    got = item_content(_data(CATALOG), DataConfig(content_buckets=512))
    assert got is not None
    assert got.spec.categorical == ("genres",) and "release_year" in got.spec.numeric
    assert len(got.features) == 7 and got.features.offsets[1] == 0  # row 0: padding
    over = item_content(_data(CATALOG), DataConfig(content_columns="release_year:skip"))
    assert over is not None and "release_year" not in over.spec.columns
    for bad, message in (
        ("nope:text", "not a catalog column"),
        ("title:words", "unknown kind"),
        ("title", "not column:kind"),
    ):
        with pytest.raises(ConfigError, match=message):
            item_content(_data(CATALOG), DataConfig(content_columns=bad))
    assert parse_overrides(" a:text , b:skip,") == {"a": "text", "b": "skip"}


def test_id_dropout_and_eval_table():
    """In eval an item's vector is id + content; in training the id part of an occurrence is
    dropped with probability id_dropout (measured over many draws)."""
    got = item_content(_data(CATALOG), DataConfig(content_buckets=256, content_id_dropout=0.5))
    assert got is not None
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=6, d_model=8, n_blocks=1, n_heads=1, max_len=4), got)
    ids = torch.full((4000,), 3)
    with torch.no_grad():
        model.eval()
        content_only = model._content_of(ids[:1])[0]
        assert torch.allclose(
            model.item_vectors(ids[:1])[0], model.item_emb.weight[3] + content_only
        )
        model.train()
        dropped = (model.item_vectors(ids) - content_only).abs().sum(1) < 1e-7
    assert 0.45 < dropped.float().mean().item() < 0.55


def test_eval_table_follows_fused_optimizer_steps():
    """The eval table's cache must not outlive a training step. The fused AdamW the trainer
    uses does not bump the weights' version counters, so a cache keyed on them alone gave
    every evaluation after the first the first one's table."""
    from training.optim import ModelOptimizer

    got = item_content(_data(CATALOG), DataConfig(content_buckets=256))
    assert got is not None
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=6, d_model=8, n_blocks=1, n_heads=1, max_len=4), got)
    opt = ModelOptimizer(model, 0.05, 0.0, sparse_items=False, fused=True)
    x = torch.tensor([[1, 2, 3, 4], [0, 5, 6, 2]])
    tables = []
    for _ in range(3):
        model.train()
        opt.zero_grad()
        model.catalog_logits(model.encode(x)[:, -1]).logsumexp(1).sum().backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            cached = model.item_table().clone()
            offsets = model._content_offsets[:-1]
            fresh = model.item_emb.weight + model.content(
                model._content_indices, offsets, per_sample_weights=model._content_weights
            )
        torch.testing.assert_close(cached, fresh)
        tables.append(cached)
    assert not torch.equal(tables[0], tables[-1])


def test_content_digest_follows_the_catalog():
    """A checkpoint's identity holds the content features' digest: the interactions'
    fingerprint alone would let a model resume on another catalog's titles."""
    first = item_content(_data(CATALOG), DataConfig(content_buckets=256))
    again = item_content(_data(CATALOG), DataConfig(content_buckets=256))
    other = CATALOG.copy()
    other.iloc[0, 0] = "a different title"
    changed = item_content(_data(other), DataConfig(content_buckets=256))
    assert first is not None and again is not None and changed is not None
    assert first.digest == again.digest
    assert changed.digest != first.digest


@pytest.fixture(scope="module")
def content_bundle(tmp_path_factory):
    """A bundle written from a student with content (synthetic data, a generated catalog)."""
    from tests.conftest import synthetic_rows, write_csv
    from training.bundle_writer import write_bundle
    from training.data import load_interactions

    tmp = tmp_path_factory.mktemp("content")
    src = write_csv(
        tmp / "d.csv",
        ["user_id", "item_id", "timestamp"],
        synthetic_rows(n_users=40, n_items=120, length=20),
    )
    data = load_interactions(str(src), DataConfig(min_interactions=10, min_users=2))
    titles = {i: f"item {i} {'red' if int(i[1:]) % 2 else 'blue'} Ünïcode" for i in data.item_ids}
    data.catalog = pd.DataFrame(
        {
            "title": [titles[i] for i in data.item_ids],
            "genres": ["A|B" if int(i[1:]) % 3 else "C" for i in data.item_ids],
        },
        index=pd.Index(data.item_ids, name="item_id"),
    )
    data.content = item_content(data, DataConfig(content_buckets=512))
    torch.manual_seed(0)
    model = SASRec(
        ModelConfig(n_items=data.n_items, d_model=16, n_blocks=1, n_heads=2, max_len=10),
        data.content,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    model.eval()
    out = tmp / "bundle"
    out.mkdir()
    write_bundle(out, model, data, {"metrics": {}, "config": {"x": 1}}, "float32")
    return model, data, out


def test_bundle_holds_content_and_serves(content_bundle):
    from lmrec import bundle, smoke
    from lmrec.student import NumpySASRec

    model, data, out = content_bundle
    loaded = bundle.load(out)
    spec = content.spec_from_manifest(loaded.manifest)
    assert spec == data.content.spec
    table = loaded.weights["content.weight"]
    assert table.shape == (512, 16) and table.dtype == np.float32
    smoke.check_serves(loaded)
    # known items: the served rows are id + content, so the runtime scores as torch does
    runtime = NumpySASRec(loaded.weights, loaded.config)
    hs = [np.arange(1, 8), np.array([3])]
    with torch.no_grad():
        expected = model.score(torch.from_numpy(runtime.pad(hs))).numpy()
    np.testing.assert_allclose(runtime(hs)[:, 1:], expected[:, 1:], atol=1e-4)
    # a "new" item: its row computed from the catalog row alone is the content part of the
    # same item in the model (the id part being what training adds on top)
    row = {"title": data.catalog["title"].iloc[4], "genres": data.catalog["genres"].iloc[4]}
    new = content.vectors(content.featurise(spec, [row]), table)[0]
    with torch.no_grad():
        part = model._content_of(torch.tensor([5]))[0].numpy()
    np.testing.assert_allclose(new, part, atol=1e-5)


def test_smoke_checks_content_table_shape(content_bundle):
    from lmrec import bundle, smoke

    _, _, out = content_bundle
    loaded = bundle.load(out)
    spec = content.spec_from_manifest(loaded.manifest)
    weights = dict(loaded.weights)
    smoke.check_weights(weights, loaded.config, spec)
    with pytest.raises(smoke.BundleError, match=r"content.weight is \(512, 8\)"):
        smoke.check_weights(weights | {"content.weight": table_of(512, 8)}, loaded.config, spec)
    with pytest.raises(smoke.BundleError, match=r"content\.weight is missing"):
        smoke.check_weights(
            {k: v for k, v in weights.items() if k != "content.weight"}, loaded.config, spec
        )
    with pytest.raises(smoke.BundleError, match="not part of the configured model"):
        smoke.check_weights(weights, loaded.config, None)  # a table without a spec
    nan = table_of(512, 16)
    nan[3, 3] = np.nan
    with pytest.raises(smoke.BundleError, match=r"content\.weight holds NaN"):
        smoke.check_weights(weights | {"content.weight": nan}, loaded.config, spec)


def table_of(rows: int, cols: int) -> np.ndarray:
    return np.zeros((rows, cols), dtype=np.float32)


def test_manifest_content_spec_malformed():
    assert content.spec_from_manifest({}) is None
    for raw in ("x", {"n_buckets": 0}, {"numeric": {"y": [2.0, 1.0]}}):
        with pytest.raises(ValueError, match="content spec"):
            content.spec_from_manifest({"content": raw})


def test_report_says_which_columns():
    from training.report import content_line

    assert "ids only" in content_line(None)
    got = item_content(_data(CATALOG), DataConfig(content_buckets=256))
    assert got is not None
    line = content_line(got.describe())
    assert "text title" in line and "categorical genres" in line and "release_year" in line
    assert "256 rows" in line and "probability 0.3" in line
    assert "the teacher and the students read" in content_line(got.describe() | {"models": "all"})
    only = content_line(got.describe() | {"models": "student"})
    assert "the students read" in only and "content_models=student" in only
    assert "the teacher reads" in content_line(got.describe() | {"models": "teacher"})
    assert "not read" in content_line(got.describe() | {"models": "none"})


@pytest.mark.parametrize(
    "hp, message",
    [
        ({"content": "maybe"}, "content must be one of"),
        ({"content_columns": "title:words"}, "is not column:kind"),
        ({"content_columns": ":text"}, "is not column:kind"),
        ({"content_buckets": "0"}, "content_buckets must be >= 1"),
        ({"content_id_dropout": "1"}, "content_id_dropout must be in [0, 1)"),
    ],
)
def test_bad_content_hyperparameters(hp, message):
    from training.config import from_hyperparameters

    with pytest.raises(ConfigError) as err:
        from_hyperparameters(hp)
    assert message in str(err.value)
