"""The user-history expert's weight and decay, chosen on valid (repeats kept).

With repeats kept the next item is often one the user already took; the served score
chooses between those and new items by adding the history expert's boost (lmrec.history)
to the small model's score (with its transitions), in the product-of-experts form of the
transition table. Weight and decay are chosen on valid NDCG@10 over a small grid, from one
scoring pass per model (training.hybrid.boost_ndcg gives every weight at once); weight 0,
the model alone, is on the grid. The job's evaluation (training/evaluation.py) then measures
the teacher and the served model with their expert as "<model>[+transitions]+history".
"""

from __future__ import annotations

import numpy as np
from lmrec.bundle import HISTORY_LABEL, TRANSITIONS_LABEL
from lmrec.history import FORMS, HistoryExpert
from lmrec.transitions import Transitions

from training.evaluate import Scorer, hide_seen, paired_gain, scored_batches
from training.hybrid import boost_ndcg, with_transitions
from training.split import EvalSet, Split

DECAYS = (0.5, 0.8, 0.95, 1.0)  # 1: how often alone; below: how often and how lately
# Wider than the transitions' grid: on JODIE Wikipedia (88% repeats) valid chose the top of
# 0 ... 8, and a large weight lets the user's own items outrank the model's new ones. Up to
# 4096: on SNAP CollegeMsg valid chose the top of 0 ... 64 (decay 0.5) and still climbed
# towards "the contact written to last" (own_recent); the boost is w * log1p(0.5 ** age),
# about w * 0.5 ** age, so ordering ten items back by recency over the model's scores takes
# a weight in the thousands (docs/experiments.md).
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 256.0, 1024.0, 4096.0)
WINDOW = 200  # newest history items the expert reads
# The grid's rows: each form (lmrec.history: "decayed" counts by position, "recency" ranks
# the distinct items) at each decay; the columns are WEIGHTS.
SHAPES = tuple((form, decay) for form in FORMS for decay in DECAYS)


def valid_ndcg(
    scorer: Scorer, split: Split, evalset: EvalSet, rows: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """(len(evalset), len(SHAPES), len(WEIGHTS)): each user's NDCG@10 (full ranking, the
    split's exclusions) at each form and decay (SHAPES) and weight of the expert, at `rows`
    (this process's users; zeros elsewhere, so processes add up to every user)."""
    out = np.zeros((len(evalset), len(SHAPES), len(WEIGHTS)))
    for idx, histories, scores in scored_batches(scorer, split, evalset, rows, batch_size):
        hide_seen(scores, histories, split.exclude_seen)
        targets = evalset.targets[idx]
        for d, (form, decay) in enumerate(SHAPES):
            # the boost at weight 1, as serving computes it; boost_ndcg scales it per weight
            r, items, unit = HistoryExpert(1.0, decay, WINDOW, form).boosts(histories)
            log_boost = unit.astype(np.float64)
            out[idx, d] = boost_ndcg(scores.copy(), targets, r, items, log_boost, WEIGHTS)
    return out


def best_point(per_user: np.ndarray) -> tuple[int, int, dict]:
    """The (shape row, weight column) valid chooses, and why. The positional form (today's,
    and every bundle's before the recency form) wins unless the recency form's best point
    is ahead of it beyond noise, paired over the same users: one more grid dimension on a
    few hundred valid users otherwise picks noise (Online Retail's time split: recency
    chosen on 564 valid users, 0.014 worse on test)."""
    means = per_user.mean(0)
    best: dict[str, tuple[int, int]] = {}
    for form in FORMS:
        masked = np.where([[f == form] for f, _ in SHAPES], means, -np.inf)
        row, col = np.unravel_index(int(np.argmax(masked)), means.shape)
        best[form] = (int(row), int(col))
    (dp, wp), (dr, wr) = best["decayed"], best["recency"]
    mean, low, high = paired_gain(per_user[:, dr, wr] - per_user[:, dp, wp])
    why = {"recency_minus_decayed": [round(v, 4) for v in (mean, low, high)]}
    return (dr, wr, why) if low > 0 else (dp, wp, why)


def label(name: str, table: Transitions | None) -> str:
    """The metrics row of a model with its expert (and its transitions, when it has them)."""
    return name + (TRANSITIONS_LABEL if table is not None else "") + HISTORY_LABEL


def choose(
    models: dict,
    names: list[str],
    tables: dict[str, Transitions | None],
    split: Split,
    cfg,
    env,
) -> tuple[dict[str, HistoryExpert | None], dict[str, float], dict]:
    """Each named model's expert chosen on valid, on top of its transitions at their weight:
    ({name: expert, None when weight 0 wins}, {name: its valid NDCG@10}, the record for
    metrics.json). One pass over valid per model: the grid needs the chosen transitions."""
    from training.dist import all_reduce_arrays
    from training.trainer import model_scorer

    evalset = split.evalset("valid")
    rows = np.arange(env.rank, len(evalset), env.world_size)
    chosen: dict[str, dict] = {}
    by_grid: dict[str, list] = {}
    experts: dict[str, HistoryExpert | None] = {}
    valid: dict[str, float] = {}
    for name in names:
        scorer = model_scorer(models[name], env.device)
        table = tables.get(name)
        if table is not None:
            scorer = with_transitions(scorer, table)
        per_user = valid_ndcg(scorer, split, evalset, rows, cfg.train.eval_batch_size)
        per_user = all_reduce_arrays(env, {"u": per_user})["u"]
        means = per_user.mean(0)
        d, w, why = best_point(per_user)
        weight, (form, decay) = WEIGHTS[w], SHAPES[d]
        chosen[name] = {"weight": weight, "decay": decay, "form": form, **why}
        by_grid[name] = [[round(float(x), 4) for x in row] for row in means]
        experts[name] = HistoryExpert(weight, decay, WINDOW, form) if weight else None
        valid[name] = float(means[d, w])
    record = {
        "rows": [list(shape) for shape in SHAPES],  # (form, decay) of each grid row
        "weights": list(WEIGHTS),
        "window": WINDOW,
        "valid_ndcg@10_by_row_weight": by_grid,
        "chosen": chosen,
    }
    return experts, valid, record
