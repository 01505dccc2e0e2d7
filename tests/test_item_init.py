"""item_init=cooccurrence: the id table starts from the training split's co-occurrence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import ArpackError

from tests.conftest import write_csv
from training import item_init, pipeline
from training.config import ConfigError, DataConfig, ModelConfig, from_hyperparameters
from training.data import load_interactions
from training.dist import DistEnv
from training.item_init import (
    INIT_STD,
    ItemInit,
    collapsed_share,
    factors,
    partner_codes,
    ppmi,
)
from training.model import SASRec
from training.split import leave_one_out

SAMPLE = Path(__file__).resolve().parents[1] / "training" / "sample_data" / "ml-100k"


def two_worlds(tmp_path, users: int = 60, seed: int = 0):
    """Users who stay inside one of two item groups (g0-*, g1-*), 8 items each; item "late"
    is only ever a user's last (test) item, "mid" only a valid one, "lone" only a one-item
    user's."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        group = u % 2
        seq = rng.choice(8, size=6, replace=False)
        rows += [[f"u{u}", f"g{group}-{i}", t] for t, i in enumerate(seq)]
        if u < 4:
            rows.append([f"u{u}", "late", 99])
        elif u < 8:
            rows += [[f"u{u}", "mid", 98], [f"u{u}", f"g{group}-7", 99]]
            last = f"g{group}-7"
            rows = [r for r in rows if not (r[0] == f"u{u}" and r[1] == last and r[2] < 98)]
    rows.append(["solo", "lone", 0])
    path = write_csv(tmp_path / "w.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    return data, leave_one_out(data)


def item(data, name: str) -> int:
    return 1 + list(data.item_ids).index(name)


def test_ppmi_reads_training_pairs_only_and_is_symmetric(tmp_path):
    data, split = two_worlds(tmp_path)
    m, active = ppmi(split)
    assert (abs(m - m.T) > 1e-12).nnz == 0
    assert m.data.min() > 0
    names = {data.item_ids[i - 1] for i in active}
    # valid and test targets and an item no pair holds have no row: they keep the random init
    assert not names & {"late", "mid", "lone"}
    assert len(names) == 16
    _, refit = ppmi(split.with_valid_in_train())  # what a refit trains on: valid, not test
    assert {data.item_ids[i - 1] for i in refit} - names == {"mid"}


def test_factors_dense_and_sparse_paths_agree():
    rng = np.random.default_rng(1)
    a = rng.random((40, 40))
    m = sp.csr_matrix((a + a.T) * (rng.random((40, 40)) < 0.3))
    m = (m + m.T).tocsr()
    sparse, dense = factors(m, 5), factors(m, 39)[:, :5]
    # the same subspace (float32 ARPACK against float64 LAPACK; signs are arbitrary)
    np.testing.assert_allclose(np.abs(sparse).sum(0), np.abs(dense).sum(0), rtol=1e-4)
    np.testing.assert_allclose(np.abs(sparse.T @ dense), np.diag((sparse**2).sum(0)), atol=1e-4)


def block_ppmi(groups: int, size: int) -> sp.csr_matrix:
    """A PPMI matrix of `groups` groups whose items all pair with each other, group g's
    values 1 + g / groups (distinct singular values: the SVD's top directions are defined)."""
    block = np.ones((size, size)) - np.eye(size)
    return sp.block_diag([block * (1 + g / groups) for g in range(groups)], format="csr")


def test_more_groups_than_dimensions_collapse_the_svd_not_the_codes():
    """40 equal groups in 8 dimensions: the SVD gives its 8 directions to 8 groups and
    leaves the other items' rows at zero; the partner codes give every row the same norm and
    bring the same group's rows together."""
    m = block_ppmi(40, 5)
    assert collapsed_share(factors(m, 8)) > 0.5
    rows = partner_codes(m, 8)
    norms = np.linalg.norm(rows, axis=1)
    assert collapsed_share(rows) == 0.0 and norms.min() > 0.5 * np.median(norms)
    unit = rows / norms[:, None]
    cos = unit @ unit.T
    off = ~np.eye(len(rows), dtype=bool)
    same = np.kron(np.eye(40), np.ones((5, 5))).astype(bool) & off
    assert cos[same].mean() > cos[~same & off].mean() + 0.3
    # an item that shares no pair keeps a zero row (the random init in the table)
    lonely = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert not partner_codes(lonely, 4)[2].any()
    assert collapsed_share(np.zeros((3, 0))) == 0.0


def test_a_collapsed_or_failed_svd_falls_back_to_partner_codes(tmp_path, monkeypatch, caplog):
    _, split = two_worlds(tmp_path)
    m = block_ppmi(40, 5)
    init = ItemInit(split, width=8)
    rows, how, failed = init._factorise(m)
    assert how.startswith("random indexing: the SVD left") and "near zero" in how and not failed
    assert collapsed_share(rows) == 0.0 and rows.shape == (200, 8)
    balanced = block_ppmi(4, 5)  # fewer groups than dimensions: the SVD keeps them all
    rows, how, _ = init._factorise(balanced)
    assert how == "SVD" and collapsed_share(rows) == 0.0
    # rows with no PPMI partner are zero in any start: they do not count as collapsed
    lonely = sp.block_diag([balanced, sp.csr_matrix((30, 30))], format="csr")
    assert init._factorise(lonely)[1] == "SVD"

    def fail(m, k):
        raise ArpackError(-9999)

    monkeypatch.setattr(item_init, "factors", fail)
    rows, how, failed = init._factorise(m)
    assert how.startswith("random indexing: the SVD failed") and failed
    assert collapsed_share(rows) == 0.0 and rows.shape == (200, 8)
    monkeypatch.setattr(item_init, "factors", lambda m, k: np.full((m.shape[0], k), np.nan))
    assert init._factorise(m)[1] == "random indexing: the SVD was not finite"
    # through rows(): a failed SVD is a warning in the job's log, the start still made
    monkeypatch.setattr(item_init, "factors", fail)
    with caplog.at_level("INFO", logger="training.item_init"):
        vectors, active = ItemInit(split, width=8).rows()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "the SVD failed" in caplog.records[0].getMessage()
    assert vectors.shape == (len(active), 8) and np.isfinite(vectors).all()


def test_random_indexing_rows_fill_the_table_at_any_width(tmp_path, monkeypatch):
    """The fallback's rows through apply(): the random init's spread, the two item groups
    apart, and a narrower model (student_plain) gets the same rows' leading columns."""
    data, split = two_worlds(tmp_path)
    monkeypatch.setattr(item_init, "COLLAPSED", -1.0)  # every SVD counts as collapsed
    init = ItemInit(split, width=32)
    assert init._factorise(ppmi(split)[0])[1].startswith("random indexing")
    group = [[item(data, f"g{g}-{i}") for i in range(8)] for g in (0, 1)]
    for width in (32, 8):
        model = SASRec(ModelConfig(n_items=data.n_items, d_model=width, n_heads=2, max_len=8))
        init.apply(model.item_emb)
        rows = model.item_emb.weight.detach()[group[0] + group[1]]
        assert rows.std().item() == pytest.approx(INIT_STD, rel=0.05)
        unit = torch.nn.functional.normalize(rows, dim=1)
        cos = unit @ unit.T
        same = cos[:8, :8][~torch.eye(8, dtype=torch.bool)]
        assert same.mean() > cos[:8, 8:].mean() + 0.4


def test_the_shipped_sample_keeps_the_svd():
    """The MovieLens 100K sample at the teacher's default width (128) stays on the SVD: the
    start its figures were measured with."""
    data = load_interactions(str(SAMPLE / "interactions.csv.gz"), DataConfig())
    m, _ = ppmi(leave_one_out(data))
    assert ItemInit(None, 128)._factorise(m)[1] == "SVD"  # type: ignore[arg-type]


def test_apply_places_groups_apart_at_the_random_scale(tmp_path):
    data, split = two_worlds(tmp_path)
    torch.manual_seed(0)
    model = SASRec(ModelConfig(n_items=data.n_items, d_model=8, n_heads=2, max_len=8))
    before = model.item_emb.weight.detach().clone()
    init = ItemInit(split, width=8)
    init.apply(model.item_emb)
    after = model.item_emb.weight.detach()
    for untouched in (0, item(data, "late"), item(data, "lone")):
        assert torch.equal(after[untouched], before[untouched])
    group = [[item(data, f"g{g}-{i}") for i in range(8)] for g in (0, 1)]
    rows = after[group[0] + group[1]]
    assert rows.std().item() == pytest.approx(INIT_STD, rel=0.05)
    unit = torch.nn.functional.normalize(rows, dim=1)
    cos = unit @ unit.T
    same = torch.cat([cos[:8, :8][~torch.eye(8, dtype=torch.bool)], cos[8:, 8:].flatten()])
    across = cos[:8, 8:].flatten()
    assert same.mean() > across.mean() + 0.5
    again = SASRec(ModelConfig(n_items=data.n_items, d_model=4, n_heads=2, max_len=8))
    init.apply(again.item_emb)  # a narrower model gets the leading directions of the same SVD
    narrow = torch.nn.functional.normalize(again.item_emb.weight.detach()[group[0]], dim=1)
    assert (narrow @ narrow.T).mean() > 0.5


def test_the_same_split_gives_the_same_table(tmp_path):
    _, split = two_worlds(tmp_path)
    a, b = ItemInit(split, 6).rows()[0], ItemInit(split, 6).rows()[0]
    np.testing.assert_array_equal(a, b)


def test_item_init_choices_are_checked():
    assert from_hyperparameters({}).train.item_init == "cooccurrence"
    assert from_hyperparameters({"item_init": "random"}).train.item_init == "random"
    with pytest.raises(ConfigError, match="item_init"):
        from_hyperparameters({"item_init": "svd"})


def test_the_job_starts_each_teacher_from_its_own_split(tmp_path):
    data, split = two_worlds(tmp_path)
    hp = {"d_model": "8", "n_heads": "2", "max_len": "8", "student_d_model": "16"}
    cfg = from_hyperparameters(hp)
    tr = pipeline._Trainer(None, cfg, DistEnv(), data, split, {}, None, None)
    random_rows = pipeline.build_teacher(cfg, data).item_emb.weight.detach()
    teacher = tr.member("teacher", 0, 1).model.item_emb.weight.detach()
    refit_split = split.with_valid_in_train()
    refit = tr.member("teacher_refit", 0, 1, on=refit_split).model.item_emb.weight.detach()
    mid, g0 = item(data, "mid"), item(data, "g0-0")
    assert torch.equal(teacher[mid], random_rows[mid])  # a valid item: unseen by the teacher
    assert not torch.equal(refit[mid], random_rows[mid])  # ... and trained on by the refit
    assert not torch.equal(teacher[g0], random_rows[g0])
    # the teacher's start is the teacher's width's alone (a student setting must not move it)
    wider = from_hyperparameters({**hp, "student_d_model": "32"})
    other = pipeline._Trainer(None, wider, DistEnv(), data, split, {}, None, None)
    assert torch.equal(other.member("teacher", 0, 1).model.item_emb.weight, teacher)
    plain = from_hyperparameters({**hp, "item_init": "random"})
    off = pipeline._Trainer(None, plain, DistEnv(), data, split, {}, None, None)
    assert torch.equal(off.member("teacher", 0, 1).model.item_emb.weight, random_rows)


def test_nothing_to_factorise_leaves_the_random_table(tmp_path):
    empty = sp.csr_matrix((5, 5))
    assert factors(empty, 3).shape == (5, 0)
    data, split = two_worlds(tmp_path)
    rows, how, failed = ItemInit(split, width=8)._factorise(empty)
    assert rows.shape == (5, 0) and how.startswith("no PPMI pair") and not failed
    model = SASRec(ModelConfig(n_items=data.n_items, d_model=8, n_heads=2, max_len=8))
    before = model.item_emb.weight.detach().clone()
    init = ItemInit(split, width=8)
    init._rows = (np.zeros((3, 0)), np.array([1, 2, 3]))  # what no PPMI pair leaves
    init.apply(model.item_emb)
    assert torch.equal(model.item_emb.weight.detach(), before)
