"""Item tables that start from what co-occurrence already knows.

A randomly initialised item table spends the first epochs learning which items go together,
the thing a count table knows before any training. `item_init=cooccurrence` starts the id
table from the training split's co-occurrence instead: the positive pointwise mutual
information (PPMI) of items that follow each other within a few steps (the counts
co-occurrence and the transitions table use, made symmetric), factorised by a truncated SVD,
rows U * sqrt(S) (Levy & Goldberg, NeurIPS 2014: word2vec's embeddings factorise a shifted
PMI matrix). Rows are rescaled to the random init's spread, so training dynamics (learning
rate, weight decay) stay those the defaults were tuned for. Items that never co-occur keep
their random row. Only training rows are read: valid and test targets stay unseen.

When the SVD has too few dimensions for the catalog's groups, its k directions go to the
largest groups and the other items' rows are left near zero: at rung M (74,090 items that
co-occur, in about 1,250 clusters, k = 64) 43% of the rows were under a tenth of the rows'
root-mean-square norm, the top tenth held 72% of the squared norm, and the teacher trailed
the random start by 0.047 NDCG@10 after two epochs. Then (more than COLLAPSED of the rows
under that tenth; every real data set measured had at most 3.4% at the default widths) each
item gets its own random code plus the PPMI-weighted sum of its partners' codes, each part
unit length (random indexing, Sahlgren 2005): items with similar partners get similar rows
and every item keeps a direction of its own (rung M: +0.027 over the random start after two
epochs). It is not the only start because where the SVD is balanced it is the better one
(Games after one epoch: valid 0.054 against 0.028); docs/experiments.md, "The co-occurrence
start at scale".

One table at the teacher's width serves student_plain too (its leading columns; a wider
student_plain keeps random columns beyond it), so a teacher's start depends on the teacher's
settings only, as its checkpoint identity says. Cost: a sparse SVD of a matrix with as many
rows as items that co-occur (docs/experiments.md, "Item tables that start from
co-occurrence"); random indexing is one sparse product.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import ArpackError, svds

from training.baselines import pair_counts
from training.split import Split

log = logging.getLogger(__name__)

INIT_STD = 0.02  # the random init's (SASRec._init)
WINDOW = 3  # steps apart, as co-occurrence and the transitions table count
# An SVD start with more than this share of rows under a tenth of the rows' root-mean-square
# norm has left those items without a direction of their own (rung M: 43%; ML-100K, Games,
# Online Retail, CollegeMsg, ml-latest-small and rung S: 0-3.4%).
COLLAPSED = 0.10


def ppmi(split: Split, window: int = WINDOW) -> tuple[sp.csr_matrix, np.ndarray]:
    """(PPMI over the items that co-occur, their ids): symmetric counts of training pairs
    within `window` steps, log(c_ab * total / (c_a * c_b)) where positive, else empty."""
    n = split.data.n_items + 1
    indptr, cols, counts = pair_counts(split, window)
    c = sp.csr_matrix((counts.astype(np.float64), cols, indptr), shape=(n, n))
    c = (c + c.T).tocsr()
    row = np.asarray(c.sum(axis=1)).ravel()
    active = np.flatnonzero(row > 0)
    c = c[active][:, active].tocoo()
    row = row[active]
    pmi = np.log(c.data * row.sum() / (row[c.row] * row[c.col]))
    keep = pmi > 0
    m = sp.csr_matrix((pmi[keep], (c.row[keep], c.col[keep])), shape=(len(active),) * 2)
    return m, active


def factors(m: sp.csr_matrix, k: int) -> np.ndarray:
    """(rows, k') = U * sqrt(S) of the top k' <= k singular triplets, largest first."""
    n = m.shape[0]
    if n == 0 or m.nnz == 0:  # no pair with a positive PMI: nothing to start from
        return np.zeros((n, 0))
    if k >= n - 1:  # ARPACK needs k < n - 1; a catalog this small factorises densely
        u, s, _ = np.linalg.svd(m.toarray())
        k = min(k, len(s))
        return u[:, :k] * np.sqrt(s[:k])
    # v0 fixed: ARPACK's start vector is otherwise random, and every DDP rank (and a rerun)
    # must build the same table. float32: 3.8x faster than float64 at rung M (4.7 s against
    # 18.0 s, 74k items) for the same subspace (singular values within 1e-6, relative).
    v0 = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    u, s, _ = svds(m.astype(np.float32), k=k, v0=v0)
    order = np.argsort(-s)
    return u[:, order] * np.sqrt(s[order])


def partner_codes(m: sp.csr_matrix, k: int) -> np.ndarray:
    """(rows, k): each row's own unit random code plus the unit PPMI-weighted sum of its
    partners' codes; a row without a partner gets zeros (its item keeps the random init).
    Seeded: every DDP rank and every rerun builds the same table."""
    n = m.shape[0]
    codes = np.random.default_rng(0).standard_normal((n, k)).astype(np.float32)
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    partners = m.astype(np.float32) @ codes
    norm = np.linalg.norm(partners, axis=1, keepdims=True)
    has = norm[:, 0] > 0
    out = np.zeros((n, k), np.float32)
    out[has] = codes[has] + partners[has] / norm[has]
    return out


def collapsed_share(vectors: np.ndarray) -> float:
    """The share of rows under a tenth of the rows' root-mean-square norm (0 for an empty
    table). Not the median: when most rows collapse, the median collapses with them."""
    if vectors.size == 0:
        return 0.0
    norms = np.linalg.norm(vectors, axis=1)
    return float((norms < 0.1 * np.sqrt(np.mean(norms**2))).mean())


class ItemInit:
    """The start of one split's table, computed on first use and cut to each model's width."""

    def __init__(self, split: Split, width: int):
        self.split, self.width = split, width
        self._rows: tuple[np.ndarray, np.ndarray] | None = None

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        if self._rows is None:
            start = time.perf_counter()
            m, active = ppmi(self.split)
            vectors, how, trouble = self._factorise(m)
            self._rows = vectors, active
            log.log(
                logging.WARNING if trouble else logging.INFO,
                "item_init: co-occurrence of %d items (%d PPMI pairs) as %d dimensions (%s) "
                "in %.1f s",
                len(active),
                m.nnz,
                vectors.shape[1],
                how,
                time.perf_counter() - start,
            )
        return self._rows

    def _factorise(self, m: sp.csr_matrix) -> tuple[np.ndarray, str, bool]:
        """(rows, how they were made, whether the SVD failed)."""
        if m.nnz == 0:
            return np.zeros((m.shape[0], 0)), "no PPMI pair: the table stays random", False
        try:
            vectors = factors(m, self.width)
        except ArpackError as e:  # a start, not a result: random indexing will do
            return partner_codes(m, self.width), f"random indexing: the SVD failed ({e})", True
        if not np.isfinite(vectors).all():
            return partner_codes(m, self.width), "random indexing: the SVD was not finite", True
        # Rows without a PPMI partner are zero in any start (their items stay random). The
        # share is measured at the teacher's width; a narrower one collapses sooner (Games:
        # 3.4% at 64, 7.8% at 16, 11.2% at 8), and student_plain's leading columns are not
        # checked apart.
        share = collapsed_share(vectors[np.diff(m.indptr) > 0])
        if share > COLLAPSED:
            why = f"random indexing: the SVD left {share:.1%} of the rows near zero"
            return partner_codes(m, self.width), why, False
        return vectors, "SVD", False

    def apply(self, item_emb: torch.nn.Embedding) -> None:
        """Overwrite the rows of the items that co-occur, in place (the rest stay random)."""
        vectors, active = self.rows()
        d = min(item_emb.embedding_dim, vectors.shape[1])
        if d == 0:
            return
        part = vectors[:, :d]
        nonzero = np.abs(part).sum(1) > 0
        scale = INIT_STD / max(float(part[nonzero].std()), 1e-12) if nonzero.any() else 0.0
        with torch.no_grad():
            w = item_emb.weight
            rows = torch.from_numpy(active[nonzero]).to(w.device)
            w[rows, :d] = torch.from_numpy(part[nonzero] * scale).to(w.dtype).to(w.device)
