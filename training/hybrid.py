"""Models with the transition boost (lmrec.transitions): the table, its weight, the scorer.

The job builds one pruned count table from the training rows, chooses a weight for the
teacher and for each small model on valid (one scoring pass per model serves every weight
of the grid, see `per_user_by_weight`), serves the distilled student with its weight
unless student_plain with its own is better on valid beyond noise (a paired 95% interval
over the same users: a tie goes to the model that carries the teacher), and reports
"<model>+transitions" beside the models alone. Weight 0 (the model alone) is always on the
grid: data without useful transitions ships no table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from lmrec.bundle import TRANSITIONS_LABEL
from lmrec.transitions import Transitions, recent_sums

from training.baselines import pair_counts
from training.evaluate import Scorer, hide_seen, scored_batches
from training.split import EvalSet, Split

WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
SUFFIX = TRANSITIONS_LABEL  # metrics rows: "<model>+transitions"
K = 10


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
    """The table and the teacher's valid NDCG@10 by weight, once chosen for distillation
    (before the students train); reused when the job adds transitions, not scored again."""

    table: Transitions | None = None
    by_weight: dict[str, np.ndarray] = field(default_factory=dict)
    weight: float = 0.0  # the teacher's; 0 = the student learnt from the teacher alone

    def choose(self, teacher, split: Split, cfg, env) -> Transitions | None:
        """Build the table and choose the teacher's weight on valid: the table at that
        weight, or None when the teacher is best alone (weight 0)."""
        s = cfg.student
        self.table = build(split, s.transitions_min_users, s.transitions_per_item)
        self.by_weight = valid_means({"teacher": teacher}, ["teacher"], self.table, split, cfg, env)
        self.weight = WEIGHTS[int(np.argmax(self.by_weight["teacher"]))]
        return dataclasses.replace(self.table, weight=self.weight) if self.weight else None


def with_transitions(scorer: Scorer, table: Transitions) -> Scorer:
    """The scorer's scores plus the table's boosts (at the table's weight)."""

    def score(histories: list[np.ndarray]) -> np.ndarray:
        scores = np.array(scorer(histories), dtype=np.float32, copy=True)
        return table.add_to(scores, histories)

    return score


# DISCOUNT[r] = sum of 1 / log2(i + 2) for ranks i < r (< K): NDCG@K summed over a range.
DISCOUNT = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(K) + 2.0))])


def expected_ndcg(above: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """NDCG@K of a target with `above` items strictly above it and `ties` items level with
    it, the tie broken uniformly at random as evaluation breaks it (its rank is uniform on
    above .. above + ties)."""
    lo = np.minimum(above, K)
    hi = np.minimum(above + ties + 1, K)
    return (DISCOUNT[hi] - DISCOUNT[lo]) / (ties + 1.0)


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
) -> np.ndarray:
    """(len(rows), weights) NDCG@10 of each user at each weight, users in the order
    scored_batches visits them (the same for every model given the same rows: pairs)."""
    parts = [np.zeros((0, len(WEIGHTS)))]
    for idx, histories, scores in scored_batches(scorer, split, evalset, rows, batch_size):
        parts.append(
            _batch_sums(scores, histories, evalset.targets[idx], table, split.exclude_seen)
        )
    return np.concatenate(parts)


def valid_means(
    models: dict,
    names: list[str],
    table: Transitions,
    split: Split,
    cfg,
    env,
    per_user: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Valid NDCG@10 at each weight of WEIGHTS for each named model (sharded under DDP)."""
    from training.dist import all_reduce_arrays
    from training.trainer import model_scorer

    evalset = split.evalset("valid")
    rows = np.arange(env.rank, len(evalset), env.world_size)
    out = {}
    for name in names:
        scorer = model_scorer(models[name], env.device)
        users = per_user_by_weight(scorer, table, split, evalset, rows, cfg.train.eval_batch_size)
        if per_user is not None:
            per_user[name] = users
        total = all_reduce_arrays(env, {"s": users.sum(0), "n": np.array(float(len(rows)))})
        out[name] = total["s"] / max(float(total["n"]), 1.0)
    return out


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


def add_transitions(
    models: dict,
    served: str | None,
    split: Split,
    negatives: dict,
    cfg,
    env,
    metrics: dict,
    measure_teacher: bool = True,
    known: TeacherBoost | None = None,
) -> tuple[str | None, Transitions | None, dict]:
    """Choose the weights on valid, evaluate the teacher and the served small model with their
    boost into `metrics` ("<name>+transitions"), and pick the small model to serve by its
    valid figure with its weight. Returns (served small model, its table at its weight or
    None when weight 0 wins, the record for metrics.json). Without `measure_teacher` (the
    job is short of time) the teacher, a measurement only, is left out. `known`: the table
    and figures chosen for distillation, reused."""
    from training.trainer import evaluate_sharded, model_scorer

    s = cfg.student
    known = known or TeacherBoost()
    table = known.table or build(split, s.transitions_min_users, s.transitions_per_item)
    known.table = table  # the history expert's choice reads each model's table (pipeline)
    small = [n for n in ("student", "student_plain") if n in models]
    names = (["teacher"] if measure_teacher or not small else []) + small
    by_weight = {n: v for n, v in known.by_weight.items() if n in names}
    todo = [n for n in names if n not in by_weight]
    per_user: dict[str, np.ndarray] = {}
    by_weight |= valid_means(models, todo, table, split, cfg, env, per_user)
    chosen = {name: WEIGHTS[int(np.argmax(v))] for name, v in by_weight.items()}
    paired = None
    if len(small) == 2 and all(n in per_user for n in small):
        # the distilled student unless the plain one is better on valid beyond noise
        # (paired over the same users, each model at its own weight)
        a, b = (per_user[n][:, int(np.argmax(by_weight[n]))] for n in small)
        paired = paired_choice(a, b, env)
        served = "student_plain" if paired[1] > 0 else "student"
    elif small:
        users = len(split.evalset("valid"))
        served = prefer_distilled({n: float(by_weight[n].max()) for n in small}, users)
    for name in ("teacher", served):
        if name is None or not chosen.get(name):
            continue
        boosted = dataclasses.replace(table, weight=chosen[name])
        scorer = with_transitions(model_scorer(models[name], env.device), boosted)
        metrics[name + SUFFIX] = {
            part: evaluate_sharded(
                scorer, split, split.evalset(part), negatives[part], env, cfg, desc=name + SUFFIX
            )
            for part in ("valid", "test")
        }
    record = {
        # the student's target: the teacher with its boost at this weight (0: alone)
        "distilled_at_weight": known.weight,
        "pairs": len(table.cols),
        "min_users": s.transitions_min_users,
        "per_item": s.transitions_per_item,
        "weights": list(WEIGHTS),
        "valid_ndcg@10_by_weight": {
            n: [round(float(x), 4) for x in v] for n, v in by_weight.items()
        },
        "weight": chosen,
    }
    if paired is not None:  # valid NDCG@10 of student_plain - student, each at its weight
        record["plain_minus_distilled_valid"] = [round(x, 4) for x in paired]
    served_table = None
    if served and chosen[served]:
        served_table = dataclasses.replace(table, weight=chosen[served])
    return served, served_table, record
