"""Models with the transition boost (lmrec.transitions): the table, its weight, the scorer.

The job builds one pruned count table from the training rows and chooses a weight for each
model on valid from one scoring pass per model (`valid_grid`: every weight of the grid at
once, exactly, see `boost_ndcg`). training/evaluation.py uses these to pick the served
small model (`paired_choice`) and to report "<model>+transitions" beside the models alone.
Weight 0 (the model alone) is always on the grid: data without useful transitions ships no
table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from lmrec.bundle import TRANSITIONS_LABEL
from lmrec.transitions import Transitions, recent_sums

from training.baselines import pair_counts
from training.evaluate import (
    TOP_K,
    MetricSums,
    Scorer,
    expected_ndcg,
    hide_seen,
    scored_batches,
)
from training.split import EvalSet, Split

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
SUFFIX = TRANSITIONS_LABEL  # metrics rows: "<model>+transitions"
K = TOP_K  # NDCG@K, exactly as training.evaluate.expected_ndcg counts it


def build(
    split: Split, min_users: int, per_item: int, weight: float = 0.0, window: int = 3
) -> Transitions:
    """Pairs made by at least `min_users` users, at most `per_item` successors per item (the
    most common; ties by item row), at `weight` (0 until the job chooses one)."""
    indptr, cols, counts = pair_counts(split, window)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((cols, -counts, rows))  # by row, then most users first
    rank = np.arange(len(order)) - indptr[rows[order]]
    kept = np.sort(order[(counts[order] >= min_users) & (rank < per_item)])
    new_indptr = np.concatenate(
        [[0], np.cumsum(np.bincount(rows[kept], minlength=len(indptr) - 1))]
    ).astype(np.int64)
    return Transitions(new_indptr, cols[kept].astype(np.int32), counts[kept], weight)


def prefer_distilled(valid_ndcg: dict[str, float], users: int) -> str:
    """The distilled student, unless student_plain's valid NDCG@10 is higher by more than
    half of one user's hit at rank 1 (0.5 / users): a smaller difference is a tie that no
    single user's ranking could have made, and the distilled student, which carries the
    teacher's knowledge, wins it."""
    if "student_plain" not in valid_ndcg:
        return "student"
    if "student" not in valid_ndcg:
        return "student_plain"
    margin = 0.5 / max(users, 1)
    return (
        "student_plain"
        if valid_ndcg["student_plain"] > valid_ndcg["student"] + margin
        else "student"
    )


@dataclass
class TeacherBoost:
    """The table and the teacher's valid NDCG@10 by weight, chosen for distillation (before
    the students train); the job's evaluation reuses them, valid is not scored again."""

    table: Transitions | None = None
    per_user: np.ndarray = field(default_factory=lambda: np.zeros((0, len(WEIGHTS))))
    weight: float = 0.0  # the teacher's; 0 = the student learnt from the teacher alone
    # The teacher's own valid metrics from the same pass, when training kept none (an ensemble).
    plain_valid: dict | None = None
    chosen: bool = False

    def choose(
        self, teacher, split: Split, negatives: np.ndarray, cfg, env, plain: bool = False
    ) -> Transitions | None:
        """Build the table and choose the teacher's weight on valid: the table at that
        weight, or None when the teacher is best alone (weight 0)."""
        s = cfg.student
        self.table = build(split, s.transitions_min_users, s.transitions_per_item)
        self.per_user, self.plain_valid = valid_grid(
            teacher, self.table, split, negatives, cfg, env, plain
        )
        self.weight = WEIGHTS[int(np.argmax(means(self.per_user, env)))]
        self.chosen = True
        return dataclasses.replace(self.table, weight=self.weight) if self.weight else None


def with_transitions(scorer: Scorer, table: Transitions) -> Scorer:
    """The scorer's scores plus the table's boosts (at the table's weight)."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        scores = np.array(scorer(histories), dtype=np.float32, copy=True)
        return table.add_to(scores, histories)

    return score


def _batch_sums(
    scores: np.ndarray,
    histories: list[np.ndarray],
    targets: np.ndarray,
    table: Transitions,
    exclude_seen: bool = True,
) -> np.ndarray:
    """(users, weights) NDCG@10 of the batch at each weight of WEIGHTS, the table's boost
    beside the scores (see `boost_ndcg`)."""
    rows, items, sums = recent_sums(
        table.indptr, table.cols, table.counts, histories, table.recent, table.decay
    )
    hide_seen(scores, histories, exclude_seen)
    return boost_ndcg(scores, targets, rows, items, np.log1p(sums.astype(np.float64)))


def boost_ndcg(
    scores: np.ndarray,
    targets: np.ndarray,
    rows: np.ndarray,
    items: np.ndarray,
    log_boost: np.ndarray,
    weights: tuple[float, ...] = WEIGHTS,
) -> np.ndarray:
    """(users, weights) NDCG@10 of each user of the batch at each weight w of
    scores + w * log_boost (at (rows, items), one entry per pair; exclusions already -inf
    in `scores`), ties with the target broken uniformly at random in expectation (as
    evaluation breaks them).

    Exact without scoring the catalog once per weight: an item without a boost keeps its
    score, so only the K best of those and the boosted items can outrank the target."""
    b = np.arange(len(targets))
    target_boost = np.zeros(len(b))
    hit = items == targets[rows]
    target_boost[rows[hit]] = log_boost[hit]
    base = scores[rows, items].astype(np.float64)  # boosted items' scores (-inf when seen)
    target_base = scores[b, targets].astype(np.float64)
    scores[rows, items] = -np.inf  # leaves the items without a boost
    scores[b, targets] = -np.inf  # and not the target: it never outranks or ties itself
    top = torch.topk(torch.from_numpy(scores), min(K, scores.shape[1]), dim=1).values.numpy()
    top = top.astype(np.float64)
    out = np.zeros((len(b), len(weights)))
    for i, w in enumerate(weights):
        tau = target_base + w * target_boost
        above, ties = (top > tau[:, None]).sum(1), (top == tau[:, None]).sum(1)
        # The top K cannot show every tie when they fill it: count those rows' ties whole.
        full = (above < K) & (ties > 0) & (above + ties == top.shape[1])
        if full.any():
            ties[full] = (scores[full] == tau[full, None]).sum(1)
        boosted = np.where(hit, -np.inf, base + w * log_boost)
        above += np.bincount(rows[boosted > tau[rows]], minlength=len(b))
        ties += np.bincount(rows[boosted == tau[rows]], minlength=len(b))
        out[:, i] = expected_ndcg(above, ties)
    return out


def per_user_by_weight(
    scorer: Scorer,
    table: Transitions,
    split: Split,
    evalset: EvalSet,
    rows: np.ndarray,
    batch_size: int = 512,
    plain: MetricSums | None = None,
    negatives: np.ndarray | None = None,
) -> np.ndarray:
    """(len(rows), weights) NDCG@10 of each user at each weight, users in the order
    scored_batches visits them (the same for every model given the same rows: pairs).
    `plain`: also counts the model's own metrics from the same scores (with `negatives`,
    the evalset's sampled negatives), for a model whose valid figures training did not keep."""
    parts = [np.zeros((0, len(WEIGHTS)))]
    for idx, histories, scores in scored_batches(scorer, split, evalset, rows, batch_size):
        targets = evalset.targets[idx]
        if plain is not None and negatives is not None:
            plain.add(scores.copy(), histories, targets, negatives[idx])
        parts.append(_batch_sums(scores, histories, targets, table, split.exclude_seen))
    return np.concatenate(parts)


def valid_grid(
    model, table: Transitions, split: Split, negatives: np.ndarray, cfg, env, plain: bool = False
) -> tuple[np.ndarray, dict | None]:
    """One pass over this rank's share of the valid users: (users, weights) NDCG@10 of each
    at every weight, and with `plain` the model's own valid metrics (all ranks added)."""
    from training.dist import all_reduce_arrays
    from training.evaluate import finalize
    from training.trainer import model_scorer

    evalset, n_items = split.evalset("valid"), split.data.n_items
    rows = np.arange(env.rank, len(evalset), env.world_size)
    seed = cfg.train.seed + env.rank
    sums = MetricSums(n_items, split.exclude_seen, seed=seed) if plain else None
    scorer = model_scorer(model, env.device)
    per_user = per_user_by_weight(
        scorer, table, split, evalset, rows, cfg.train.eval_batch_size, sums, negatives
    )
    metrics = None
    if sums is not None:
        metrics = finalize(all_reduce_arrays(env, sums.partial()), n_items, negatives.shape[1])
    return per_user, metrics


def means(per_user: np.ndarray, env) -> np.ndarray:
    """(weights,) mean over every rank's users."""
    from training.dist import all_reduce_arrays

    total = all_reduce_arrays(env, {"s": per_user.sum(0), "n": np.array(float(len(per_user)))})
    return total["s"] / max(float(total["n"]), 1.0)


def paired_choice(a: np.ndarray, b: np.ndarray, env) -> tuple[float, float, float]:
    """Mean of b - a over paired users (this rank's, summed across ranks) and its 95%
    interval: (mean, low, high)."""
    from training.dist import all_reduce_arrays

    d = b - a
    total = all_reduce_arrays(
        env, {"s": np.array(d.sum()), "q": np.array((d * d).sum()), "n": np.array(float(len(d)))}
    )
    n = max(float(total["n"]), 1.0)
    mean = float(total["s"]) / n
    var = max(float(total["q"]) / n - mean * mean, 0.0) * n / max(n - 1.0, 1.0)
    half = 1.96 * (var / n) ** 0.5
    return mean, mean - half, mean + half
