"""Ranking metrics over all evaluated users, in two protocols.

- "full": the held-out item ranked against the whole catalog, the user's already-seen items
  excluded. HR@k, NDCG@k, MRR (untruncated) and catalog coverage of the top-k lists.
- "sampled100": the held-out item ranked against 100 items the user never touched, drawn
  uniformly (Kang & McAuley, ICDM'18), so figures sit beside the published ones.

Ties are broken at random (seeded): a constant scorer gets the expected rank of a random
ordering, neither the best nor the worst.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from training.split import EvalSet, Split

# A scorer maps a batch of histories (oldest first) to scores over the catalog,
# (B, n_items + 1) float32, column 0 being padding.
Scorer = Callable[[list[np.ndarray]], np.ndarray]

SUM_KEYS = ("hr", "ndcg", "mrr", "s_hr", "s_ndcg", "s_mrr", "n")


def sample_negatives(split: Split, evalset: EvalSet, n: int, seed: int) -> np.ndarray:
    """(U, n) items each user never interacted with (any split), 0 where the catalog runs out."""
    rng = np.random.default_rng(seed)
    n_items = split.data.n_items
    out = np.zeros((len(evalset), n), dtype=np.int64)
    for row, user in enumerate(evalset.users):
        seen = split.data.sequence(user)
        available = n_items - len(seen)
        want = min(n, available)
        picked = np.empty(0, dtype=np.int64)
        while len(picked) < want:
            cand = rng.integers(1, n_items + 1, size=2 * want + 16)
            cand = cand[~np.isin(cand, seen)]
            picked = np.concatenate([picked, cand])
            _, first = np.unique(picked, return_index=True)
            picked = picked[np.sort(first)]
        out[row, :want] = picked[:want]
    return out


def _count(mask: np.ndarray) -> np.ndarray:
    # Summing the bytes of a bool mask in numpy is ~5x faster than torch's sum of a bool
    # tensor on a CPU (which converts to int first); this is most of evaluation's own time.
    return mask.view(np.uint8).sum(1, dtype=np.int32).astype(np.int64)


def _ranks(scores: np.ndarray, target_scores: np.ndarray, gen: torch.Generator) -> np.ndarray:
    """0-based rank of each target among `scores` (which include the target itself)."""
    greater = _count(scores > target_scores[:, None])
    ties = _count(scores == target_scores[:, None]) - 1
    # Uniform position inside the tied group: floor(u * (ties + 1)) for u in [0, 1).
    u = torch.rand(len(ties), generator=gen, dtype=torch.float64).numpy()
    return greater + (u * (ties + 1)).astype(np.int64)


def evaluate_partial(
    scorer: Scorer,
    split: Split,
    evalset: EvalSet,
    negatives: np.ndarray,
    rows: np.ndarray | None = None,
    k: int = 10,
    batch_size: int = 512,
    seed: int = 0,
    desc: str | None = None,
) -> dict[str, np.ndarray]:
    """Metric sums over the given rows of `evalset` (all by default); see `finalize`.

    Returning sums lets DDP ranks evaluate disjoint shards and add them up.
    """
    gen = torch.Generator().manual_seed(seed)
    n_items = split.data.n_items
    rows = np.arange(len(evalset)) if rows is None else rows
    # Users in order of history length: a batch is padded to its longest history, and in
    # Games (mean 7 items, window 50) random batches were mostly padding (5x slower).
    rows = rows[np.argsort(evalset.prefix_len[rows], kind="stable")]
    sums = {key: 0.0 for key in SUM_KEYS}
    covered = torch.zeros(n_items + 1, dtype=torch.bool)
    batches = range(0, len(rows), batch_size)
    for start in tqdm(batches, desc=desc, disable=desc is None, leave=False):
        idx = rows[start : start + batch_size]
        users, plen = evalset.users[idx], evalset.prefix_len[idx]
        targets = evalset.targets[idx]
        histories = [split.history(u, p) for u, p in zip(users, plen, strict=True)]
        # A private, writable copy: seen items are masked in place below.
        scores = np.array(scorer(histories), dtype=np.float32, copy=True)
        b = np.arange(len(idx))

        # Sampled protocol first, on the raw scores (the negatives are unseen by construction).
        neg = negatives[idx]
        cand_scores = np.take_along_axis(scores, np.concatenate([targets[:, None], neg], 1), 1)
        cand_scores[:, 1:][neg == 0] = -np.inf  # catalog ran out
        s_rank = _ranks(cand_scores, cand_scores[:, 0], gen)

        # Full protocol: hide padding and everything the user has already seen.
        scores[:, 0] = -np.inf
        seen_rows = np.repeat(b, [len(h) for h in histories])
        scores[seen_rows, np.concatenate(histories)] = -np.inf
        f_rank = _ranks(scores, scores[b, targets], gen)
        top_scores, top = torch.topk(torch.from_numpy(scores), min(k, n_items), dim=1)
        covered[top[torch.isfinite(top_scores)]] = True

        for prefix, rank in (("", f_rank), ("s_", s_rank)):
            rank = rank.astype(np.float64)
            hit = rank < k
            sums[prefix + "hr"] += float(hit.sum())
            sums[prefix + "ndcg"] += float((hit / np.log2(rank + 2.0)).sum())
            sums[prefix + "mrr"] += float((1.0 / (rank + 1.0)).sum())
        sums["n"] += len(idx)
    out = {key: np.array(value, dtype=np.float64) for key, value in sums.items()}
    out["covered"] = covered.numpy()
    return out


def finalize(
    partial: dict[str, np.ndarray], n_items: int, n_negatives: int, k: int = 10
) -> dict[str, dict]:
    n = max(float(partial["n"]), 1.0)
    full = {
        f"hr@{k}": float(partial["hr"]) / n,
        f"ndcg@{k}": float(partial["ndcg"]) / n,
        "mrr": float(partial["mrr"]) / n,
        f"coverage@{k}": float(partial["covered"][1:].sum()) / n_items,
        "users": int(partial["n"]),
    }
    sampled = {
        f"hr@{k}": float(partial["s_hr"]) / n,
        f"ndcg@{k}": float(partial["s_ndcg"]) / n,
        "mrr": float(partial["s_mrr"]) / n,
        "users": int(partial["n"]),
    }
    return {"full": full, f"sampled{n_negatives}": sampled}


def evaluate(scorer: Scorer, split: Split, evalset: EvalSet, negatives: np.ndarray, **kw) -> dict:
    k = kw.get("k", 10)
    partial = evaluate_partial(scorer, split, evalset, negatives, **kw)
    return finalize(partial, split.data.n_items, negatives.shape[1], k)
