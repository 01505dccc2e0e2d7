"""benchmarks/scale.py --text: a rung's item catalog whose content carries the item's cluster
(what a content model can learn) but not its place on the ring (what only behaviour shows),
written beside interactions that stay exactly those of the ladder's rungs."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from lmrec import content

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from scale import item_text, synthesize, walk, write_data


@pytest.fixture(scope="module")
def rung(tmp_path_factory):
    data = tmp_path_factory.mktemp("rung")
    write_data(data, n_users=2_000, n_items=1_200, seed=3, text=True)
    return data, walk(2_000, 1_200, seed=3)[1]["catalog"]


def test_text_leaves_the_interactions_of_the_ladder_untouched(rung):
    data, _ = rung
    written = pd.read_parquet(data / "interactions.parquet")
    assert written.equals(synthesize(2_000, 1_200, seed=3))


def test_catalog_has_every_item_with_columns_training_infers(rung):
    data, cat = rung
    items = pd.read_csv(data / "items.csv", dtype=str, keep_default_na=False)
    assert items["item_id"].tolist() == [str(i) for i in range(cat.n_items)]
    spec = content.infer_spec({c: items[c].tolist() for c in ("title", "group", "price")})
    kinds = (spec.text, spec.categorical, tuple(spec.numeric))
    assert kinds == (("title",), ("group",), ("price",))
    assert items["title"].str.split().str.len().between(3, 5).all()
    first_group = items["group"].str.split("|").str[0]
    assert (first_group == [f"g{c // 8}" for c in cat.cluster_of]).all()
    assert 0.2 < items["group"].str.contains("|", regex=False).mean() < 0.4


def _shared_words(titles: list[set[str]], a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(titles[i] & titles[j]) for i, j in zip(a, b, strict=True)]))


def test_title_carries_the_cluster_but_not_the_ring_order(rung):
    _, cat = rung
    titles = [set(t.split()) for t in item_text(cat, seed=3)["title"]]
    rng = np.random.default_rng(0)
    items = rng.integers(0, cat.n_items, 2_000)
    neighbour = cat.neighbour(rng, items)  # the ring's next items (same cluster)
    c = cat.cluster_of[items]
    same_cluster = cat.items[cat.start[c] + rng.integers(0, cat.size[c])]
    anywhere = rng.integers(0, cat.n_items, 2_000)
    near, same, other = (
        _shared_words(titles, items, x) for x in (neighbour, same_cluster, anywhere)
    )
    assert same > 4 * other  # the cluster is in the words
    assert near == pytest.approx(same, rel=0.1)  # the ring order is not


def test_text_is_seeded(rung):
    _, cat = rung
    assert item_text(cat, seed=3).equals(item_text(cat, seed=3))
    assert not item_text(cat, seed=3)["title"].equals(item_text(cat, seed=4)["title"])
