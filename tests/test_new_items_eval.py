"""New items in the job's own evaluation: items no training row holds (first seen after the
training cut) are placed by their content alone, as serving places an item added after the
data was cut; every table reports the users whose target is such an item ("full_new"),
beside the content-only TF-IDF baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from lmrec import bundle as fmt
from lmrec import content
from lmrec.student import dequantize_items

from tests.conftest import TINY_HP, train_bundle, write_csv
from training.baselines import ContentTfidf
from training.config import DataConfig, ModelConfig
from training.data import Interactions, load_interactions
from training.evaluate import MetricSums, finalize
from training.item_content import item_content
from training.model import SASRec
from training.split import make_split

USERS, OLD_ITEMS, NEW_ITEMS, STEPS = 60, 30, 6, 20


def _rows() -> list[list]:
    """Every user takes STEPS items at time 1000 * step + user; in the last two steps (the
    newest 10% of the rows, after the time split's valid cut-off) only NEW items exist."""
    rows = []
    for u in range(USERS):
        for step in range(STEPS):
            if step < STEPS - 2:
                item = f"old{(u + step) % OLD_ITEMS}"
            else:
                item = f"new{(u + step) % NEW_ITEMS}"
            rows.append([f"u{u}", item, 1000 * step + u])
    return rows


def _catalog(ids) -> pd.DataFrame:
    words = ["red sun", "blue moon", "green field", "grey stone", "gold leaf", "pink cloud"]
    titles = [f"{words[int(i.removeprefix('old').removeprefix('new')) % 6]} {i}" for i in ids]
    return pd.DataFrame({"title": titles}, index=pd.Index(list(ids), name="item_id"))


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("newitems_eval")
    inter = write_csv(tmp / "log.csv", ["user_id", "item_id", "timestamp"], _rows())
    items = tmp / "items.csv"
    ids = sorted({r[1] for r in _rows()})
    _catalog(ids).to_csv(items)
    return inter, items


def _split(log):
    data = load_interactions(str(log[0]), DataConfig(min_interactions=1, min_users=1))
    data.catalog = _catalog(data.item_ids)
    data.content = item_content(data, DataConfig(content_buckets=256))
    return data, make_split(data, "time")


def test_items_first_seen_after_the_cut_are_never_trained_and_summed_apart(log):
    # GIVEN the time split of a log whose newest rows hold only new items
    data, split = _split(log)
    new = split.never_trained
    # THEN exactly the new items are never trained (padding is not an item)
    names = {data.item_ids[i - 1] for i in np.flatnonzero(new)}
    assert names == {f"new{i}" for i in range(NEW_ITEMS)} and not new[0]
    # WHEN a batch is counted with two of three targets new
    ids = data.item_ids.tolist()
    old, seen, fresh = ids.index("old1") + 1, ids.index("old2") + 1, np.flatnonzero(new)[:2]
    targets = np.array([old, *fresh])
    scores = np.zeros((3, data.n_items + 1), np.float32)
    scores[np.arange(3), targets] = 1.0  # every target first
    sums = MetricSums(data.n_items, True, new_items=new)
    sums.add(scores, [np.array([seen])] * 3, targets, np.ones((3, 2), np.int64))
    out = finalize(sums.partial(), data.n_items, 2)
    # THEN the new part holds the two users whose target is new, with their own figure
    assert out["full_new"]["users"] == 2 and out["full_new"]["ndcg@10"] == 1.0
    assert out["full"]["users"] == 3
    # AND without new items there is no part
    plain = MetricSums(data.n_items, True, new_items=np.zeros_like(new))
    plain.add(scores.copy(), [np.array([seen])] * 3, targets, np.ones((3, 2), np.int64))
    assert "full_new" not in finalize(plain.partial(), data.n_items, 2)


def test_a_never_trained_item_is_its_content_alone_and_its_id_row_learns_nothing(log):
    # GIVEN a content model told which items training holds
    data, split = _split(log)
    data.content.trained = ~split.never_trained
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=data.n_items, d_model=8, n_blocks=1, n_heads=1, max_len=8)
    model = SASRec(cfg, data.content)
    new = torch.from_numpy(np.flatnonzero(split.never_trained))
    old = torch.from_numpy(np.flatnonzero(~split.never_trained)[1:])  # no padding
    # THEN a new item's vector (table and lookup) is its content part, a known one id + content
    model.eval()
    with torch.no_grad():
        table, part = model.item_table(), model._content_of(torch.arange(data.n_items + 1))
        assert torch.allclose(table[new], part[new])
        assert torch.allclose(table[old], model.item_emb.weight[old] + part[old])
        assert torch.allclose(model.item_vectors(new), part[new])
    # AND training through the whole table leaves a new item's id row without gradient
    model.train()
    model.item_table().sum().backward()
    grad = model.item_emb.weight.grad
    assert grad is not None and not grad[new].any() and grad[old].abs().sum() > 0


def test_content_tfidf_ranks_by_the_words_a_history_shares():
    # GIVEN a catalog where items 1 and 3 share "red sun" and item 2 shares nothing
    ids = np.array(["a", "b", "c"])
    data = Interactions(
        user_ids=np.array(["u"]),
        item_ids=ids,
        offsets=np.array([0, 3]),
        items=np.array([1, 2, 3]),
        timestamps=np.arange(3, dtype=np.float64),
        fingerprint="sha256:x",
        catalog=pd.DataFrame(
            {"title": ["red sun rising", "blue moon", "red sun setting"]},
            index=pd.Index(ids, name="item_id"),
        ),
    )
    data.content = item_content(data, DataConfig(content_buckets=1024))
    baseline = ContentTfidf(make_split(data, "loo"))
    # WHEN a user who took item 1 is scored THEN item 3 (shared words) beats item 2 (none)
    scores = baseline([np.array([1])])
    assert scores.shape == (1, 4) and scores[0, 3] > scores[0, 2] >= 0.0
    assert scores[0, 0] == 0.0  # padding has no features


def test_content_tfidf_needs_a_catalog(ml100k_small):
    data = load_interactions(str(ml100k_small[0]), DataConfig(min_interactions=1, min_users=1))
    with pytest.raises(ValueError, match="needs the item catalog"):
        ContentTfidf(make_split(data, "loo"))


@pytest.mark.slow  # a whole training job, ~15 s
def test_a_time_split_job_reports_new_items_and_serves_them_by_content(log, tmp_path):
    # GIVEN the log and its catalog WHEN the job trains under split=time
    hp = {**TINY_HP, "split": "time", "min_interactions": "1", "min_users": "1"}
    hp |= {"content_buckets": "256", "item_table_dtype": "float32"}
    data_args = ["--data", str(log[0]), "--items", str(log[1])]
    out = train_bundle(data_args, tmp_path / "model", hp)
    doc = json.loads((out / "metrics.json").read_text())
    # THEN every model and baseline has a new-items part over the same users, TF-IDF too
    users = {name: m["test"]["full_new"]["users"] for name, m in doc["metrics"].items()}
    assert {"teacher", "student", "content_tfidf", "popularity", "cooccurrence"} <= set(users)
    assert len(set(users.values())) == 1 and next(iter(users.values())) > 0
    assert "full_new" in doc["protocol"]
    assert "New items: the" in (out / "report.md").read_text()
    # AND the bundle's row of a new item is its content vector, as a live item's would be
    b = fmt.load(str(out))
    spec = content.spec_from_manifest(b.manifest)
    rows = dequantize_items(b.weights)
    row = list(b.item_ids).index("new0") + 1
    catalog = _catalog(["new0"]).reset_index()
    record = {k: str(v) for k, v in catalog.iloc[0].items() if k != "item_id"}
    alone = content.vectors(content.featurise(spec, [record]), b.weights["content.weight"])
    np.testing.assert_allclose(rows[row], alone[0], atol=1e-5)


def test_the_report_table_lists_new_item_figures_only_when_there_are_some():
    from training.report import new_items_table

    part = {"ndcg@10": 0.0, "hr@10": 0.0, "mrr": 0.0012, "mrr_ci95": [0.0008, 0.0016], "users": 40}
    metrics = {
        "student": {"test": {"full": {}, "full_new": part}},
        "content_tfidf": {"test": {"full": {}, "full_new": part | {"mrr": 0.0004}}},
    }
    table = new_items_table(metrics, "student")
    assert table.startswith("New items: the 40 test users") and "| MRR |" in table
    assert "| student (served) | 0.0000 | 0.0000 | 0.0012 [0.0008, 0.0016] |" in table
    assert new_items_table({"student": {"test": {"full": {}}}}) == ""


def test_a_refit_teacher_learns_the_id_rows_of_the_items_only_valid_rows_hold(log, tmp_path):
    # GIVEN a time-split job whose teacher reads the catalog, refitted on train + valid
    import threading

    from training import pipeline
    from training.config import from_hyperparameters
    from training.dist import DistEnv
    from training.sagemaker import Paths
    from training.trainer import Phase

    hp = {**TINY_HP, "epochs": "1", "student": "false", "split": "time", "refit": "true"}
    hp |= {"content_models": "all", "content_buckets": "256", "progress": "false"}
    cfg = from_hyperparameters(hp)
    paths = Paths(str(log[0]), str(log[1]), tmp_path / "model", None, None)
    data, split, negatives = pipeline.prepare_data(paths, cfg)
    refit_split = split.with_valid_in_train()
    learnt_late = np.flatnonzero(split.never_trained & ~refit_split.never_trained)
    assert len(learnt_late)  # items first held by valid rows
    # WHEN the teacher and its refit train
    stop = threading.Event()
    trained = pipeline.train_models(paths, cfg, DistEnv(), data, split, negatives, stop)
    # THEN the teacher knows those items by content alone, the refit by id and content
    keep = {n: trained[n][0]._id_keep for n in ("teacher", "teacher_refit")}
    assert keep["teacher"] is not None and (keep["teacher"][learnt_late] == 0).all()
    refit_keep = keep["teacher_refit"]
    assert refit_keep is None or (refit_keep[learnt_late] == 1).all()
    # AND a checkpoint knows which mask its weights were trained under
    identity = {
        n: pipeline._identity(Phase(n, trained[n][0], 1e-3, 1), cfg, data, DistEnv())
        for n in ("teacher", "teacher_refit")
    }
    assert identity["teacher"]["content_only"] != identity["teacher_refit"].get("content_only")
    # AND the served models' mask (bundle, evaluation) is the main split's again
    assert data.content is not None
    assert np.array_equal(data.content.trained, ~split.never_trained)
