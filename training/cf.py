"""Collaborative-filtering baselines: implicit-feedback ALS and EASE, tuned on valid.

- als: matrix factorisation for implicit feedback (Hu, Koren & Volinsky 2008) from the
  `implicit` library (CPU, conjugate gradient). Only the item factors are kept; a user's
  vector is solved exactly from the history the scorer is given (implicit's
  recalculate_user), so ALS ranks from the same input as every other model: the valid
  item is part of a test history, and no users x factors table is needed to score.
  Memory: the training matrix (nnz), users x factors and items x factors while fitting,
  (B, n_items) scores per batch; never users x items.
- ease: the closed-form linear item-item model (Steck 2019), B = I - P / diag(P) with
  P = (X^T X + lambda I)^-1. Dense items x items, O(items^3) time: only where the catalog
  is at most EASE_MAX_ITEMS (measured: benchmarks/results/README.md).

The hyperparameters come from a small grid, each point fitted on train and scored on valid
with the evaluation protocol itself; test never takes part. Cost (seconds, peak traced
memory of the fit) is recorded beside the figures.
"""

from __future__ import annotations

import time
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from training.evaluate import evaluate
from training.split import Split

# EASE inverts an (items + 1)^2 float64 matrix: 1.6 s at 2,000 items, 15 s at 5,000 and 76 s
# at 8,000 on the 2-core EPYC (busy); Games' 23.7k items would take ~25 min per lambda.
EASE_MAX_ITEMS = 5_000
# Valid NDCG@10 picked these points (benchmarks/results/README.md): ML-100K is best at alpha 1
# (64 factors 0.0840 vs 0.0691 at alpha 10), Games at alpha 10-40 and 128 factors (0.0476 vs
# 0.0306 at alpha 1); the regularisation moved nothing beyond noise (0.1 to 10).
ALS_GRID: tuple[dict, ...] = (
    {"factors": 64, "regularization": 0.1, "alpha": 1.0},
    {"factors": 64, "regularization": 0.1, "alpha": 10.0},
    {"factors": 128, "regularization": 0.1, "alpha": 10.0},
    {"factors": 128, "regularization": 0.1, "alpha": 40.0},
)
ALS_ITERATIONS = 15
# From 500,000 training interactions (synthetic rungs M and L) one point of 64 factors: the
# four-point grid took 545 s at M (0.9M interactions) on the busy 2-core machine, more than
# the whole M job's 423 s, and at L each point is a fit over 1M users and 660k items plus a
# valid pass over 10,000 users. alpha 10: Games' and M's valid figures picked 10-40.
LARGE_LOG = 500_000
ALS_GRID_LARGE: tuple[dict, ...] = ({"factors": 64, "regularization": 0.1, "alpha": 10.0},)
EASE_GRID: tuple[dict, ...] = ({"lam": 100.0}, {"lam": 500.0}, {"lam": 2000.0})


def train_matrix(split: Split) -> sp.csr_matrix:
    """(n_users, n_items + 1) binary CSR of the training interactions (column 0: padding)."""
    data = split.data
    indptr = np.concatenate([[0], np.cumsum(split.train_len)])
    items = data.items[split.train_mask()]
    ones = np.ones(len(items), dtype=np.float32)
    return sp.csr_matrix((ones, items, indptr), shape=(data.n_users, data.n_items + 1))


def history_matrix(histories: Sequence[np.ndarray], n_cols: int) -> sp.csr_matrix:
    """(B, n_cols) binary CSR of a batch of histories."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    items = np.concatenate(histories) if len(histories) else np.zeros(0, np.int64)
    ones = np.ones(len(items), dtype=np.float32)
    m = sp.csr_matrix((ones, items, indptr), shape=(len(histories), n_cols))
    m.sum_duplicates()  # a history given twice the same item counts it once
    m.data[:] = 1.0
    return m


class ALS:
    name = "als"

    def __init__(
        self,
        split: Split,
        factors: int = 64,
        regularization: float = 0.1,
        alpha: float = 10.0,
        iterations: int = ALS_ITERATIONS,
        seed: int = 0,
    ):
        from implicit.cpu.als import AlternatingLeastSquares

        self.params = {"factors": factors, "regularization": regularization, "alpha": alpha}
        with warnings.catch_warnings():  # its advice to limit BLAS threads: done below
            warnings.simplefilter("ignore", RuntimeWarning)
            self.model = AlternatingLeastSquares(
                factors=factors,
                regularization=regularization,
                alpha=alpha,
                iterations=iterations,
                random_state=seed,
            )
        # implicit parallelises over users itself; a threaded BLAS underneath oversubscribes.
        with threadpool_limits(1, "blas"):
            self.model.fit(train_matrix(split), show_progress=False)
        self.model.user_factors = None  # (n_users, factors): not needed to score histories
        self.n_cols = split.data.n_items + 1

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        with threadpool_limits(1, "blas"):
            users = self.model.recalculate_user(
                np.arange(len(histories)), history_matrix(histories, self.n_cols)
            )  # (B, factors)
        return users @ self.model.item_factors.T  # (B, n_items + 1)

    def nbytes(self) -> int:
        return int(self.model.item_factors.nbytes)


class EASE:
    name = "ease"

    def __init__(self, split: Split, lam: float = 500.0):
        self.params = {"lam": lam}
        x = train_matrix(split)
        gram = (x.T @ x).toarray().astype(np.float64)  # (n_items + 1)^2
        gram[np.diag_indices_from(gram)] += lam
        p = np.linalg.inv(gram)
        del gram
        p /= -np.diag(p)  # B = -P / diag(P) column-wise, then a zero diagonal
        p[np.diag_indices_from(p)] = 0.0
        self.weights = p.astype(np.float32)  # (n_items + 1, n_items + 1)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        return history_matrix(histories, len(self.weights)) @ self.weights  # (B, n_items + 1)

    def nbytes(self) -> int:
        return int(self.weights.nbytes)


Baseline = ALS | EASE
# A fitted baseline's evaluation on valid: evaluate()'s result (metrics by protocol).
ValidEval = Callable[[Baseline], dict]


@dataclass
class Tuned:
    """The chosen baseline, its valid figures and what choosing it cost."""

    model: Baseline
    params: dict
    valid: dict
    grid: list[dict] = field(default_factory=list)  # each point: params, valid NDCG@10, seconds
    tune_seconds: float = 0.0  # every grid point's fit and valid scoring, in all
    peak_fit_mb: float = 0.0  # the largest traced allocation peak of one fit

    def record(self) -> dict:
        return {
            "params": self.params,
            "chosen_on": "valid NDCG@10, full ranking (test takes no part)",
            "grid": self.grid,
            "tune_seconds": round(self.tune_seconds, 2),
            "peak_fit_mb": round(self.peak_fit_mb, 1),
            "model_mb": round(self.model.nbytes() / 2**20, 1),
        }


def traced_fit(build: Callable[[], Baseline]) -> tuple[Baseline, float, float]:
    """The baseline, its fit's seconds and traced peak MB above the start (numpy, scipy and
    implicit allocate their arrays through Python's traced allocator)."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    start_mb = tracemalloc.get_traced_memory()[0] / 2**20
    began = time.perf_counter()
    model = build()
    seconds = time.perf_counter() - began
    peak_mb = tracemalloc.get_traced_memory()[1] / 2**20 - start_mb
    if not tracing:
        tracemalloc.stop()
    return model, seconds, peak_mb


def tune(
    make: Callable[..., Baseline], split: Split, grid: Sequence[dict], valid_eval: ValidEval
) -> Tuned:
    """Each grid point fitted on `split`'s training data and evaluated on valid; the best
    valid full NDCG@10 wins (the first on a tie)."""
    best: Tuned | None = None
    points, total, peak = [], 0.0, 0.0
    for params in grid:
        model, fit_s, fit_mb = traced_fit(lambda p=params: make(split, **p))  # type: ignore[misc]
        began = time.perf_counter()
        valid = valid_eval(model)
        seconds = fit_s + time.perf_counter() - began
        score = valid["full"]["ndcg@10"]
        points.append({**params, "valid_ndcg@10": round(score, 5), "seconds": round(seconds, 2)})
        total, peak = total + seconds, max(peak, fit_mb)
        if best is None or score > best.valid["full"]["ndcg@10"]:
            best = Tuned(model, dict(params), valid)
    if best is None:
        raise ValueError("tune: an empty grid")
    best.grid, best.tune_seconds, best.peak_fit_mb = points, total, peak
    return best


def grids(
    n_items: int, interactions: int = 0, first_only: bool = False
) -> dict[str, tuple[Callable[..., Baseline], tuple[dict, ...]]]:
    """The baselines this data allows, each with its grid: EASE only up to EASE_MAX_ITEMS,
    the smaller ALS grid from LARGE_LOG training interactions; `first_only`: each grid's
    first point (TrainConfig.cf_grid)."""
    als_grid = ALS_GRID_LARGE if interactions >= LARGE_LOG else ALS_GRID
    out: dict[str, tuple[Callable[..., Baseline], tuple[dict, ...]]] = {"als": (ALS, als_grid)}
    if n_items <= EASE_MAX_ITEMS:
        out["ease"] = (EASE, EASE_GRID)
    if first_only:
        out = {name: (make, grid[:1]) for name, (make, grid) in out.items()}
    return out


def evaluate_cf(
    split: Split,
    negatives: dict,
    refit: bool = False,
    skip: str = "",
    first_only: bool = False,
    **eval_kw,
) -> tuple[dict, dict]:
    """(metrics, record): each baseline the catalog allows, tuned on valid, then scored on
    test; with `refit`, the chosen hyperparameters fitted again on train + valid
    ("<name>_refit", test only). record[name]: the choice and its cost; a baseline the
    catalog rules out, or every one when `skip` gives a reason (the job is short of time),
    gets a one-line reason instead."""
    metrics: dict = {}
    record: dict = {}
    if skip:
        return metrics, {name: {"skipped": skip} for name in ("als", "ease")}

    def scored(model: Baseline, name: str) -> dict:
        return evaluate(model, split, split.evalset(name), negatives[name], **eval_kw)

    interactions = int(split.train_len.sum())
    for name, (make, grid) in grids(split.data.n_items, interactions, first_only).items():
        tuned = tune(make, split, grid, lambda m: scored(m, "valid"))
        began = time.perf_counter()
        metrics[name] = {"valid": tuned.valid, "test": scored(tuned.model, "test")}
        record[name] = tuned.record() | {"test_seconds": round(time.perf_counter() - began, 2)}
        if refit:
            on = split.with_valid_in_train()
            model, seconds, _ = traced_fit(lambda: make(on, **tuned.params))  # noqa: B023
            metrics[name + "_refit"] = {"test": scored(model, "test")}
            record[name]["refit_fit_seconds"] = round(seconds, 2)
    if "ease" not in record:
        record["ease"] = {
            "skipped": f"{split.data.n_items:,} items > {EASE_MAX_ITEMS:,}: EASE's dense "
            "items x items inverse costs O(items^3) time and O(items^2) memory"
        }
    return metrics, record
