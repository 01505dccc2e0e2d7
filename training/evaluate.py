"""Ranking metrics over all evaluated users, in two protocols.

- "full": the held-out item ranked against the whole catalog, the user's already-seen items
  excluded. HR@k, NDCG@k, MRR (untruncated) and catalog coverage of the top-k lists.
- "sampled100": the held-out item ranked against 100 items the user never touched, drawn
  uniformly (Kang & McAuley, ICDM'18), so figures sit beside the published ones.

Ties are broken at random (seeded): a constant scorer gets the expected rank of a random
ordering, neither the best nor the worst.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from training.split import EvalSet, Split

# A scorer maps a batch of histories (oldest first) to scores over the catalog,
# (B, n_items + 1) float32, column 0 being padding.
Scorer = Callable[[list[np.ndarray]], np.ndarray]

SUM_KEYS = ("hr", "ndcg", "mrr", "s_hr", "s_ndcg", "s_mrr", "ndcg_sq", "mrr_sq", "s_ndcg_sq", "n")
# With repeats kept, the full protocol is also summed over two parts of the users: those whose
# target is already in their history ("repeat", prefix r_) and the rest ("explore", e_).
PARTS = {"repeat": "r_", "explore": "e_"}
# Whatever the repeats, the users whose target no model trained on ("new", n_): an item that
# first appears after the training cut (split=time) or only in valid/test rows, the way a
# new item arrives in production (training.split.Split.never_trained).
NEW_PART = "n_"
PART_PREFIXES = (*PARTS.values(), NEW_PART)
PART_KEYS = tuple(
    p + k for p in PART_PREFIXES for k in ("hr", "ndcg", "mrr", "ndcg_sq", "mrr_sq", "n")
)
# Scores held at once while evaluating: rows x (n_items + 1) float32 stays under 64 MB, so a
# batch of 512 users shrinks to 50 at 671k items instead of taking 1.4 GB.
TILE_FLOATS = 1 << 24
Z95 = 1.959963984540054


TOP_K = 10  # the k of the per-user NDCG@k that paired comparisons use
# DISCOUNT[r] = sum of 1 / log2(i + 2) for ranks i < r (< TOP_K): NDCG@TOP_K summed over a range.
DISCOUNT = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(TOP_K) + 2.0))])


def expected_ndcg(above: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """NDCG@TOP_K of a target with `above` items strictly above it and `ties` items level with
    it, the tie broken uniformly at random as evaluation breaks it (its rank is uniform on
    above .. above + ties)."""
    lo = np.minimum(above, TOP_K)
    hi = np.minimum(above + ties + 1, TOP_K)
    return (DISCOUNT[hi] - DISCOUNT[lo]) / (ties + 1.0)


def _pick_unseen(
    rng: np.random.Generator, users: np.ndarray, n: int, seen_codes: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """One vectorised round: for each user up to n distinct unseen items, in draw order,
    and how many were found. seen_codes: sorted user * (n_items + 1) + item."""
    width = 2 * n + 16
    cand = rng.integers(1, n_items + 1, size=(len(users), width))
    codes = users[:, None].astype(np.int64) * (n_items + 1) + cand
    pos = np.searchsorted(seen_codes, codes).clip(max=max(len(seen_codes) - 1, 0))
    ok = seen_codes[pos] != codes if len(seen_codes) else np.ones_like(cand, bool)
    # Repeats inside a row: keep the first draw (a stable sort puts it first among equals).
    order = np.argsort(cand, axis=1, kind="stable")
    srt = np.take_along_axis(cand, order, 1)
    dup_sorted = np.zeros_like(ok)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    dup = np.zeros_like(ok)
    np.put_along_axis(dup, order, dup_sorted, 1)
    ok &= ~dup
    rank = np.cumsum(ok, axis=1) - 1
    keep = ok & (rank < n)
    out = np.zeros((len(users), n), dtype=np.int64)
    rows = np.nonzero(keep)
    out[rows[0], rank[keep]] = cand[keep]
    return out, keep.sum(1)


def sample_negatives(split: Split, evalset: EvalSet, n: int, seed: int) -> np.ndarray:
    """(U, n) items each user never interacted with (any split), 0 where the catalog runs out.

    Vectorised rounds over all users; a user with fewer than 2n unseen items (only in tiny
    catalogs) gets a permutation of the unseen ones instead."""
    rng = np.random.default_rng(seed)
    data = split.data
    n_items, lengths = data.n_items, data.lengths()
    owner = np.repeat(np.arange(data.n_users, dtype=np.int64), lengths)
    seen_codes = np.sort(owner * (n_items + 1) + data.items)
    out = np.zeros((len(evalset), n), dtype=np.int64)
    available = n_items - lengths[evalset.users]
    small = available < 2 * n
    for row in np.flatnonzero(small):  # tiny catalogs only
        unseen = np.setdiff1d(np.arange(1, n_items + 1), data.sequence(evalset.users[row]))
        picked = rng.permutation(unseen)[:n]
        out[row, : len(picked)] = picked
    pending = np.flatnonzero(~small)
    while len(pending):
        picked, found = _pick_unseen(rng, evalset.users[pending], n, seen_codes, n_items)
        done = found >= n
        out[pending[done]] = picked[done]
        pending = pending[~done]
    return out


def _count(mask: np.ndarray) -> np.ndarray:
    # Summing the bytes of a bool mask in numpy is ~5x faster than torch's sum of a bool
    # tensor on a CPU (which converts to int first); this is most of evaluation's own time.
    return mask.view(np.uint8).sum(1, dtype=np.int32).astype(np.int64)


def _ranks(
    scores: np.ndarray, target_scores: np.ndarray, gen: torch.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based rank of each target among `scores` (which include the target itself), and
    the counts it was drawn from: items strictly above the target, items tied with it."""
    greater = _count(scores > target_scores[:, None])
    ties = _count(scores == target_scores[:, None]) - 1
    # Uniform position inside the tied group: floor(u * (ties + 1)) for u in [0, 1).
    u = torch.rand(len(ties), generator=gen, dtype=torch.float64).numpy()
    return greater + (u * (ties + 1)).astype(np.int64), greater, ties


def _add_rank_sums(sums: dict[str, float], prefix: str, rank: np.ndarray, k: int) -> None:
    """Per-user HR, NDCG and MRR summed (and squared, for the confidence intervals)."""
    rank = rank.astype(np.float64)
    hit = rank < k
    ndcg = hit / np.log2(rank + 2.0)
    mrr = 1.0 / (rank + 1.0)
    sums[prefix + "hr"] += float(hit.sum())
    sums[prefix + "ndcg"] += float(ndcg.sum())
    sums[prefix + "mrr"] += float(mrr.sum())
    sums[prefix + "ndcg_sq"] += float((ndcg * ndcg).sum())
    if prefix != "s_":
        sums[prefix + "mrr_sq"] += float((mrr * mrr).sum())
    if prefix in PART_PREFIXES:
        sums[prefix + "n"] += len(rank)


def is_repeat(histories: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """(B,) bool: the target is already in the row's history."""
    return np.array([t in h for h, t in zip(histories, targets, strict=True)], dtype=bool)


def hide_seen(scores: np.ndarray, histories: list[np.ndarray], seen: bool = True) -> None:
    """The full protocol's exclusions, in place: padding (column 0) and, with `seen` (repeats
    dropped: Split.exclude_seen), every row's history items to -inf."""
    scores[:, 0] = -np.inf
    if not seen:
        return
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    scores[rows, np.concatenate(histories)] = -np.inf


def tile_rows(batch_size: int, n_items: int) -> int:
    """Users scored at once: at most batch_size, and at most TILE_FLOATS scores."""
    return max(1, min(batch_size, TILE_FLOATS // (n_items + 1)))


def scored_batches(
    scorer: Scorer,
    split: Split,
    evalset: EvalSet,
    rows: np.ndarray | None = None,
    batch_size: int = 512,
) -> Iterator[tuple[np.ndarray, list[np.ndarray], np.ndarray]]:
    """(rows of evalset, their histories, a private writable copy of their scores) per batch.
    Users in order of history length: a batch is padded to its longest history, and in
    Games (mean 7 items, window 50) random batches were mostly padding (5x slower)."""
    for idx, histories in history_batches(split, evalset, rows, batch_size):
        yield idx, histories, np.array(scorer(histories), dtype=np.float32, copy=True)


def history_batches(
    split: Split, evalset: EvalSet, rows: np.ndarray | None, batch_size: int
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """(rows of evalset, their histories) per batch, in scored_batches' order and sizes."""
    rows = np.arange(len(evalset)) if rows is None else rows
    rows = rows[np.argsort(evalset.prefix_len[rows], kind="stable")]
    size = tile_rows(batch_size, split.data.n_items)
    for start in range(0, len(rows), size):
        idx = rows[start : start + size]
        users, plen = evalset.users[idx], evalset.prefix_len[idx]
        yield idx, [split.history(u, p) for u, p in zip(users, plen, strict=True)]


def _candidates(targets: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    return np.concatenate([targets[:, None], negatives], 1)


class SameScores:
    """The scores of a scorer that ranks every user's catalog alike (popularity), prepared
    once: sorted, so that a target's place among all items is two binary searches and only
    the user's own hidden items are counted apart. Evaluating popularity at 671k items
    broadcast the row to every user and compared it whole: 94 s per baseline at rung L
    (10,000 users, valid and test), users x items work for one row of numbers."""

    def __init__(self, scores: np.ndarray):
        self.raw = np.asarray(scores, dtype=np.float32)  # (n_items + 1,), column 0 padding
        self.full = self.raw.copy()
        self.full[0] = -np.inf  # padding is never ranked
        self.sorted = np.sort(self.full)
        self.finite = int(np.isfinite(self.full).sum())
        # Best first, ties by item id (stable): the order the top-k lists are read from.
        self.order = np.argsort(-self.full, kind="stable")

    def _hidden(self, histories: list[np.ndarray], exclude_seen: bool):
        """(rows, items) of each user's hidden items, each pair once."""
        if not exclude_seen or not histories:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
        n = len(self.full)
        codes = np.unique(rows * n + np.concatenate(histories).astype(np.int64))
        return codes // n, codes % n

    def counts(
        self, histories: list[np.ndarray], targets: np.ndarray, exclude_seen: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(above, ties, finite) per user, as `_ranks` counts them on the user's row with its
        hidden items at -inf: items strictly above the target, items level with it (less the
        target), and whether the target's own score is finite."""
        b = len(targets)
        rows, items = self._hidden(histories, exclude_seen)
        hidden_target = np.zeros(b, bool)
        hidden_target[rows[items == targets[rows]]] = True
        t = np.where(hidden_target, -np.inf, self.full[targets])
        finite = np.isfinite(t)
        g = self.full[items]
        over = np.bincount(rows, g > t[rows], minlength=b).astype(np.int64)
        level = np.bincount(rows, g == t[rows], minlength=b).astype(np.int64)
        alive = self.finite - np.bincount(rows, np.isfinite(g), minlength=b).astype(np.int64)
        hi = np.searchsorted(self.sorted, t, side="right")
        lo = np.searchsorted(self.sorted, t, side="left")
        n = len(self.full)
        above = np.where(finite, (n - hi) - over, alive)
        ties = np.where(finite, (hi - lo) - level - 1, n - alive - 1)
        return above, ties, finite

    def top(self, histories: list[np.ndarray], k: int, exclude_seen: bool) -> np.ndarray:
        """The items of every user's top-k list (finite scores, hidden items skipped)."""
        rows, items = self._hidden(histories, exclude_seen)
        most = int(np.bincount(rows, minlength=len(histories)).max()) if len(rows) else 0
        head = self.order[: k + most]
        n = len(self.full)
        hidden = np.sort(rows * n + items)
        codes = np.arange(len(histories))[:, None] * n + head[None, :]
        pos = np.searchsorted(hidden, codes).clip(max=max(len(hidden) - 1, 0))
        ok = np.isfinite(self.full[head])[None, :] & (
            hidden[pos] != codes if len(hidden) else np.ones(codes.shape, bool)
        )
        keep = ok & (np.cumsum(ok, axis=1) <= k)
        return head[np.flatnonzero(keep.any(0))]


class MetricSums:
    """Per-user HR, NDCG and MRR summed over batches of scored users, both protocols, plus the
    catalog coverage of the top-k lists (see `finalize`). One per model variant: the job's
    evaluation pass (training/evaluation.py) feeds one batch of a model's scores to several.
    Sums, so DDP ranks can score disjoint shards and add them up."""

    def __init__(
        self,
        n_items: int,
        exclude_seen: bool,
        k: int = 10,
        seed: int = 0,
        new_items: np.ndarray | None = None,
    ):
        """`new_items`: (n_items + 1,) bool, the items no model trained on (Split.never_trained);
        the users whose target is one are also summed apart (NEW_PART)."""
        self.k, self.n_items, self.exclude_seen = k, n_items, exclude_seen
        self.new_items = new_items if new_items is not None and new_items.any() else None
        self.gen = torch.Generator().manual_seed(seed)
        self.sums = {key: 0.0 for key in SUM_KEYS + PART_KEYS}
        self.covered = torch.zeros(n_items + 1, dtype=torch.bool)

    def add(
        self,
        scores: np.ndarray,
        histories: list[np.ndarray],
        targets: np.ndarray,
        negatives: np.ndarray,
    ) -> np.ndarray:
        """Count one batch (`scores` is modified: exclusions set to -inf). Returns the batch's
        full-protocol (above, ties): how many items outrank each target, and tie with it."""
        b = np.arange(len(targets))
        # Sampled protocol first, on the raw scores (the negatives are unseen by construction).
        s_rank = self._sampled_rank(scores[b[:, None], _candidates(targets, negatives)], negatives)

        # Full protocol: hide padding and (repeats dropped) everything the user has seen.
        hide_seen(scores, histories, self.exclude_seen)
        f_rank, above, ties = _ranks(scores, scores[b, targets], self.gen)
        top_scores, top = torch.topk(torch.from_numpy(scores), min(self.k, self.n_items), dim=1)
        self.covered[top[torch.isfinite(top_scores)]] = True
        self._add_ranks(histories, targets, f_rank, s_rank)
        return np.stack([above, ties])

    def add_same(
        self,
        same: SameScores,
        histories: list[np.ndarray],
        targets: np.ndarray,
        negatives: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`add` for a scorer that gives every user the same scores, without a users x items
        array: each target's counts over the catalog come from the sorted scores, less the
        user's hidden items. The same sums and random draws as `add` on the broadcast scores;
        only which of several items tied at the k-th place counts for coverage may differ.
        Returns ((above, ties), whether each target's score is finite)."""
        s_rank = self._sampled_rank(same.raw[_candidates(targets, negatives)], negatives)
        above, ties, finite = same.counts(histories, targets, self.exclude_seen)
        u = torch.rand(len(ties), generator=self.gen, dtype=torch.float64).numpy()
        f_rank = above + (u * (ties + 1)).astype(np.int64)
        self.covered[torch.from_numpy(same.top(histories, self.k, self.exclude_seen))] = True
        self._add_ranks(histories, targets, f_rank, s_rank)
        return np.stack([above, ties]), finite

    def _sampled_rank(self, cand_scores: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        cand_scores = np.array(cand_scores, copy=True)
        cand_scores[:, 1:][negatives == 0] = -np.inf  # catalog ran out
        return _ranks(cand_scores, cand_scores[:, 0], self.gen)[0]

    def _add_ranks(
        self,
        histories: list[np.ndarray],
        targets: np.ndarray,
        f_rank: np.ndarray,
        s_rank: np.ndarray,
    ) -> None:
        for prefix, rank in (("", f_rank), ("s_", s_rank)):
            _add_rank_sums(self.sums, prefix, rank, self.k)
        if not self.exclude_seen:
            repeat = is_repeat(histories, targets)
            _add_rank_sums(self.sums, PARTS["repeat"], f_rank[repeat], self.k)
            _add_rank_sums(self.sums, PARTS["explore"], f_rank[~repeat], self.k)
        if self.new_items is not None:
            _add_rank_sums(self.sums, NEW_PART, f_rank[self.new_items[targets]], self.k)
        self.sums["n"] += len(targets)

    def partial(self) -> dict[str, np.ndarray]:
        out = {key: np.array(value, dtype=np.float64) for key, value in self.sums.items()}
        out["covered"] = self.covered.numpy()
        return out


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
    per_user: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Metric sums over the given rows of `evalset` (all by default); see `finalize`.
    `per_user` ((len(evalset),)): filled at those rows with each user's NDCG@10, ties with
    the target in expectation (no random draw: the figure paired comparisons use)."""
    sums = MetricSums(split.data.n_items, split.exclude_seen, k, seed, split.never_trained)
    rows = np.arange(len(evalset)) if rows is None else rows
    same = getattr(scorer, "same_for_all", None)
    # Popularity: no users x items array (SameScores), for scores that are finite or -inf
    # (+inf and nan would sort apart from how the row comparisons count them).
    if same is not None and not (np.isnan(same).any() or np.isposinf(same).any()):
        _same_partial(sums, SameScores(same), split, evalset, negatives, rows, batch_size, per_user)
        return sums.partial()
    batches = scored_batches(scorer, split, evalset, rows, batch_size)
    total = -(-len(rows) // tile_rows(batch_size, split.data.n_items))
    for idx, histories, scores in tqdm(
        batches, desc=desc, disable=desc is None, total=total, leave=False
    ):
        targets = evalset.targets[idx]
        above, ties = sums.add(scores, histories, targets, negatives[idx])
        if per_user is not None:
            per_user[idx] = user_ndcg(scores, targets, above, ties)
    return sums.partial()


def _same_partial(
    sums: MetricSums,
    same: SameScores,
    split: Split,
    evalset: EvalSet,
    negatives: np.ndarray,
    rows: np.ndarray,
    batch_size: int,
    per_user: np.ndarray | None,
) -> None:
    """evaluate_partial's loop for SameScores: the same users in the same batches (so the
    same random tie draws), each user's row never built."""
    for idx, histories in history_batches(split, evalset, rows, batch_size):
        targets = evalset.targets[idx]
        (above, ties), finite = sums.add_same(same, histories, targets, negatives[idx])
        if per_user is not None:
            per_user[idx] = np.where(finite, expected_ndcg(above, ties), 0.0)


def user_ndcg(
    scores: np.ndarray, targets: np.ndarray, above: np.ndarray, ties: np.ndarray
) -> np.ndarray:
    """(B,) each user's NDCG@10 from MetricSums.add's counts (`scores` after it: exclusions
    at -inf), ties in expectation; a target at -inf (excluded, or unknown to the model) is a
    miss."""
    hit = np.isfinite(scores[np.arange(len(targets)), targets])
    return np.where(hit, expected_ndcg(above, ties), 0.0)


def ci95(total: float, total_sq: float, n: float) -> list[float]:
    """[low, high]: the normal-approximation 95% interval of a mean of per-user values."""
    if n < 2:
        return [float("nan"), float("nan")]
    mean = total / n
    var = max(total_sq / n - mean * mean, 0.0) * n / (n - 1)
    half = Z95 * (var / n) ** 0.5
    return [mean - half, mean + half]


def paired_gain(gain: np.ndarray) -> tuple[float, float, float]:
    """Mean of a per-user difference and its 95% interval (normal approximation). Under two
    users there is no interval: it is widened to hold 0, so nothing is beyond noise."""
    if len(gain) < 2:
        mean = float(gain.mean()) if len(gain) else 0.0
        return mean, min(mean, 0.0), max(mean, 0.0)
    half = 1.96 * float(gain.std(ddof=1)) / np.sqrt(len(gain))
    return float(gain.mean()), float(gain.mean()) - half, float(gain.mean()) + half


def finalize(
    partial: dict[str, np.ndarray], n_items: int, n_negatives: int, k: int = 10
) -> dict[str, dict]:
    """Means over users, each with its 95% confidence interval ("<metric>_ci95": [low, high])."""
    n = max(float(partial["n"]), 1.0)
    p = {key: float(value) for key, value in partial.items() if key != "covered"}
    full = {
        f"hr@{k}": p["hr"] / n,
        f"hr@{k}_ci95": ci95(p["hr"], p["hr"], n),  # a hit is 0 or 1: its square is itself
        f"ndcg@{k}": p["ndcg"] / n,
        f"ndcg@{k}_ci95": ci95(p["ndcg"], p["ndcg_sq"], n),
        "mrr": p["mrr"] / n,
        "mrr_ci95": ci95(p["mrr"], p["mrr_sq"], n),
        f"coverage@{k}": float(partial["covered"][1:].sum()) / n_items,
        "users": int(p["n"]),
    }
    sampled = {
        f"hr@{k}": p["s_hr"] / n,
        f"hr@{k}_ci95": ci95(p["s_hr"], p["s_hr"], n),
        f"ndcg@{k}": p["s_ndcg"] / n,
        f"ndcg@{k}_ci95": ci95(p["s_ndcg"], p["s_ndcg_sq"], n),
        "mrr": p["s_mrr"] / n,
        "users": int(p["n"]),
    }
    out = {"full": full, f"sampled{n_negatives}": sampled}
    if sum(p.get(prefix + "n", 0.0) for prefix in PARTS.values()) > 0:  # repeats kept
        for part, prefix in PARTS.items():
            out[f"full_{part}"] = _part(p, prefix, k)
    if p.get(NEW_PART + "n", 0.0) > 0:  # some targets are items no model trained on
        out["full_new"] = _part(p, NEW_PART, k)
    return out


def _part(p: dict[str, float], prefix: str, k: int) -> dict:
    """The full protocol's figures over one part of the users (repeat, explore or new targets)."""
    n = p[prefix + "n"]
    m = max(n, 1.0)
    return {
        f"hr@{k}": p[prefix + "hr"] / m,
        f"hr@{k}_ci95": ci95(p[prefix + "hr"], p[prefix + "hr"], n),
        f"ndcg@{k}": p[prefix + "ndcg"] / m,
        f"ndcg@{k}_ci95": ci95(p[prefix + "ndcg"], p[prefix + "ndcg_sq"], n),
        "mrr": p[prefix + "mrr"] / m,
        "mrr_ci95": ci95(p[prefix + "mrr"], p[prefix + "mrr_sq"], n),
        "users": int(n),
    }


def evaluate(scorer: Scorer, split: Split, evalset: EvalSet, negatives: np.ndarray, **kw) -> dict:
    k = kw.get("k", 10)
    partial = evaluate_partial(scorer, split, evalset, negatives, **kw)
    return finalize(partial, split.data.n_items, negatives.shape[1], k)
