"""The job's evaluation: each model scored once on valid and once on test, every consumer fed
from those passes.

1. valid (choose): training already measured each trained model on valid at the epoch it
   kept (FitResult.best_valid_metrics). With transitions, one more pass per model gives,
   per user, NDCG@10 at every weight of the grid at once (hybrid.valid_grid; the teacher's
   was made for distillation and is reused), and for a model training never measured (an
   ensemble) its own figures from the same scores. From it come each model's weight, the
   served small model (the distilled student unless student_plain is ahead beyond noise,
   paired over the same users) and the boosted models' valid rows. With repeats kept, the
   history expert's grid sits on top of the chosen weights: one pass more over valid, for
   the teacher and the served model only.
2. test (measure): one pass per model; each batch of its scores feeds every variant the
   table shows (the model alone, "+transitions" at its weight, "+history") and, for the
   served model as it serves, the per-user NDCG@10 the gate pairs with production
   (training/champion.py).
3. Baselines in the very same protocol, each from its own (cheap) pass.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from lmrec.content import RowLift
from lmrec.history import HistoryExpert
from lmrec.transitions import Transitions

from training import hybrid, repeat_expert
from training.baselines import (
    TFIDF_MAX_ITEMS,
    ContentTfidf,
    CoOccurrence,
    OwnFrequent,
    OwnRecent,
    Popularity,
    RecentPopularity,
)
from training.cf import evaluate_cf
from training.cold_start import choose_cold_start
from training.config import RunConfig
from training.dist import DistEnv, all_reduce_arrays
from training.ensemble import TeacherEnsemble
from training.evaluate import (
    MetricSums,
    ci95,
    evaluate,
    finalize,
    paired_gain,
    scored_batches,
    user_ndcg,
)
from training.hybrid import SUFFIX, WEIGHTS, TeacherBoost
from training.model import SASRec
from training.new_items import choose_offset, content_only_rows
from training.split import Split
from training.trainer import evaluate_sharded, model_scorer

log = logging.getLogger(__name__)
SMALL = ("student", "student_plain")


@dataclass
class Variant:
    """A model's scores as one metrics row sees them: alone, or with experts added."""

    label: str
    table: Transitions | None = None
    expert: HistoryExpert | None = None
    lift: RowLift | None = None  # the served model's new-item offset on content-only rows

    def apply(self, scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        for boost in (self.table, self.expert, self.lift):
            if boost is not None:
                boost.add_to(scores, histories)
        return scores


@dataclass
class Evaluation:
    """What the passes produced, for the report, the bundle and the gate."""

    metrics: dict = field(default_factory=dict)
    served: str | None = None
    table: Transitions | None = None  # the served model's, at its weight (None: alone)
    transitions: dict | None = None  # how the weights were chosen (metrics.json)
    expert: HistoryExpert | None = None  # the served model's history expert (repeats kept)
    history: dict | None = None
    new_items: dict | None = None  # the served model's new-item offset (training/new_items.py)
    served_variant: str | None = None  # the metrics row of the served model as it serves
    # Each test row's per-user NDCG@10 (ties in expectation), evalset order: the paired
    # comparisons (each row against co-occurrence; the served model against production).
    per_user: dict[str, np.ndarray] = field(default_factory=dict)
    costs: dict = field(default_factory=dict)  # each baseline's seconds (and choice)
    variants: dict[str, list[Variant]] = field(default_factory=dict)
    # The served model against the teacher as it is used, paired (summary.distillation).
    distillation: dict | None = None
    cold_start: dict | None = None  # popular or trending for no history (training/cold_start.py)


def _grid_row(per_user: np.ndarray, column: int, env: DistEnv) -> dict:
    """A boosted model's valid row from its weight grid: NDCG@10 with ties in expectation."""
    values = per_user[:, column]
    total = all_reduce_arrays(
        env,
        {
            "s": np.array(values.sum()),
            "q": np.array((values * values).sum()),
            "n": np.array(float(len(values))),
        },
    )
    n = float(total["n"])
    mean = float(total["s"]) / max(n, 1.0)
    return {
        "full": {
            "ndcg@10": mean,
            "ndcg@10_ci95": ci95(float(total["s"]), float(total["q"]), n),
            "users": int(n),
            "note": "from the weight choice's pass: NDCG@10 only, ties in expectation",
        }
    }


def _choose_transitions(
    ev: Evaluation,
    models: dict,
    split: Split,
    negatives: dict,
    cfg: RunConfig,
    env: DistEnv,
    boost: TeacherBoost,
    measure_teacher: bool,
) -> dict[str, Transitions | None]:
    """Step 1 with transitions: each model's weight and the served small model; returns each
    model's table at its weight (None: alone)."""
    s = cfg.student
    if boost.table is None:
        boost.table = hybrid.build(split, s.transitions_min_users, s.transitions_per_item)
    table = boost.table
    small = [n for n in SMALL if n in models]
    names = (["teacher"] if measure_teacher or not small else []) + small
    per_user: dict[str, np.ndarray] = {}
    if boost.chosen and "teacher" in names:
        per_user["teacher"] = boost.per_user
        if boost.plain_valid is not None:
            ev.metrics.setdefault("teacher", {})["valid"] = boost.plain_valid
    for name in names:
        if name in per_user:
            continue
        plain = "valid" not in ev.metrics.get(name, {})
        per_user[name], own = hybrid.valid_grid(
            models[name], table, split, negatives["valid"], cfg, env, plain
        )
        if own is not None:
            ev.metrics.setdefault(name, {})["valid"] = own
    by_weight = {name: hybrid.means(values, env) for name, values in per_user.items()}
    column = {name: int(np.argmax(v)) for name, v in by_weight.items()}
    chosen = {name: WEIGHTS[c] for name, c in column.items()}
    paired = None
    if len(small) == 2:  # the distilled student unless the plain one is ahead beyond noise
        a, b = (per_user[n][:, column[n]] for n in small)
        paired = hybrid.paired_choice(a, b, env)
        ev.served = "student_plain" if paired[1] > 0 else "student"
    elif small:
        ev.served = small[0]
    tables: dict[str, Transitions | None] = {}
    for name, weight in chosen.items():
        tables[name] = dataclasses.replace(table, weight=weight) if weight else None
        if weight and name in ("teacher", ev.served):  # rows of the models the table shows
            ev.metrics[name + SUFFIX] = {"valid": _grid_row(per_user[name], column[name], env)}
    ev.transitions = {
        # the student's target: the teacher with its boost at this weight (0: alone)
        "distilled_at_weight": boost.weight,
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
        ev.transitions["plain_minus_distilled_valid"] = [round(x, 4) for x in paired]
    if ev.served is not None:
        ev.table = tables.get(ev.served)
    return tables


def _choose_history(
    ev: Evaluation,
    models: dict,
    tables: dict[str, Transitions | None],
    split: Split,
    cfg: RunConfig,
    env: DistEnv,
) -> dict[str, HistoryExpert | None]:
    """Step 1 with repeats kept: the teacher's and the served model's history experts."""
    names = [n for n in dict.fromkeys(("teacher", ev.served)) if n is not None and n in models]
    experts, valid, ev.history = repeat_expert.choose(models, names, tables, split, cfg, env)
    for name, expert in experts.items():
        if expert is not None:
            row = {"full": {"ndcg@10": valid[name], "note": "from the expert's choice"}}
            ev.metrics[repeat_expert.label(name, tables.get(name))] = {"valid": row}
    ev.expert = experts.get(ev.served) if ev.served else None
    return experts


def _new_item_lift(
    ev: Evaluation,
    models: dict,
    tables: dict[str, Transitions | None],
    split: Split,
    cfg: RunConfig,
    env: DistEnv,
) -> RowLift | None:
    """The served model's new-item offset, chosen on valid (training/new_items.py) by the
    main process and shared with the others, and the lift it gives the rows content alone
    places, as serving gives it (lmrec.content.RowLift); None when the offset is 0 or no row
    is content-only."""
    served = ev.served
    model = models.get(served) if served is not None else None
    if served is None or not isinstance(model, SASRec) or model.content is None:
        return None
    offset = 0.0
    if env.is_main:
        ev.new_items = choose_offset(model, split, cfg.train.seed, tables.get(served))
        offset = float(ev.new_items["offset"])
    offset = float(all_reduce_arrays(env, {"offset": np.array(offset)})["offset"])
    data = split.data
    rows = content_only_rows(model, (data.items, data.timestamps))
    return RowLift(rows, offset) if offset > 0 and len(rows) else None


def _variants(
    ev: Evaluation,
    models: dict,
    tables: dict[str, Transitions | None],
    experts: dict[str, HistoryExpert | None],
    lift: RowLift | None = None,
) -> None:
    """Each model's metrics rows for the test pass, and which row is the served model. With
    their experts: the teacher and the served model only (at rung M each more row costs as
    much as the pass's scoring: ranking 10,000 users over 76k items). The served model's
    rows also carry its new-item `lift`, as it serves."""
    for name in models:
        boosted = name in ("teacher", ev.served)
        own = lift if name == ev.served else None
        rows = [Variant(name, lift=own)]
        table = tables.get(name) if boosted else None
        expert = experts.get(name) if boosted else None
        if table is not None:
            rows.append(Variant(name + SUFFIX, table, lift=own))
        if expert is not None:
            rows.append(Variant(repeat_expert.label(name, table), table, expert, own))
        ev.variants[name] = rows
    if ev.served is not None:
        ev.served_variant = ev.variants[ev.served][-1].label


def _test_pass(
    ev: Evaluation, name: str, model, split: Split, negatives: dict, cfg: RunConfig, env
) -> None:
    """Step 2 for one model: one scoring pass over this rank's test users, every variant's
    metrics from it, and the served model's per-user NDCG@10 (ties in expectation)."""
    evalset, n_items = split.evalset("test"), split.data.n_items
    rows = np.arange(env.rank, len(evalset), env.world_size)
    variants = ev.variants[name]
    seed = cfg.train.seed + env.rank  # each row's tie draws as if it were scored alone
    new = split.never_trained
    sums = {
        v.label: MetricSums(n_items, split.exclude_seen, seed=seed, new_items=new) for v in variants
    }
    per_user = {v.label: np.zeros(len(evalset)) for v in variants}
    scorer = model_scorer(model, env.device)
    for idx, histories, scores in scored_batches(
        scorer, split, evalset, rows, cfg.train.eval_batch_size
    ):
        targets, neg = evalset.targets[idx], negatives["test"][idx]
        for i, v in enumerate(variants):
            own = scores if i == len(variants) - 1 else scores.copy()
            above, ties = sums[v.label].add(v.apply(own, histories), histories, targets, neg)
            per_user[v.label][idx] = user_ndcg(own, targets, above, ties)
    for v in variants:
        total = all_reduce_arrays(env, sums[v.label].partial())
        row = finalize(total, n_items, negatives["test"].shape[1])
        ev.metrics.setdefault(v.label, {})["test"] = row
    ev.per_user |= all_reduce_arrays(env, per_user)  # every rank's users, on every rank


def evaluate_job(
    models: dict[str, SASRec | TeacherEnsemble],
    known_valid: dict[str, dict],
    served: str | None,
    split: Split,
    negatives: dict,
    cfg: RunConfig,
    env: DistEnv,
    boost: TeacherBoost,
    short: bool = False,
) -> Evaluation:
    """Steps 1-3 for `models` (by metrics name); `known_valid`: the valid figures training
    kept for these very weights; `served`: the small model to serve when no transitions
    choose it (hybrid.prefer_distilled on those figures); `short`: the job is short of time
    (the teacher's transitions and the tuned baselines are left out)."""
    ev = Evaluation(served=served)
    ev.metrics = {name: {"valid": known_valid[name]} for name in models if name in known_valid}
    tables: dict[str, Transitions | None] = {}
    if cfg.student.transitions and "teacher" in models:
        tables = _choose_transitions(ev, models, split, negatives, cfg, env, boost, not short)
    experts: dict[str, HistoryExpert | None] = {}
    if ev.served and not split.exclude_seen:  # repeats kept: the user-history expert
        experts = _choose_history(ev, models, tables, split, cfg, env)
    lift = _new_item_lift(ev, models, tables, split, cfg, env)
    _variants(ev, models, tables, experts, lift)
    for name, model in models.items():
        # A refit trained on the valid items: only its test figures mean anything.
        if "valid" not in ev.metrics.get(name, {}) and not name.startswith("teacher_refit"):
            scorer = model_scorer(model, env.device)
            valid = evaluate_sharded(
                scorer, split, split.evalset("valid"), negatives["valid"], env, cfg
            )
            ev.metrics.setdefault(name, {})["valid"] = valid
        _test_pass(ev, name, model, split, negatives, cfg, env)
    if env.is_main:  # baselines are cheap; one process is enough
        refit = "teacher_refit" in models
        on_valid: dict[str, np.ndarray] = {}
        ev.metrics |= evaluate_baselines(
            split, negatives, cfg, refit, ev.costs, short, ev.per_user, on_valid
        )
        _against_cooccurrence(ev)
        ev.cold_start = choose_cold_start(on_valid, ev.per_user)
        # the teacher as it is used: its last row carries the experts the served model has
        teacher = ev.variants["teacher"][-1].label if "teacher" in ev.variants else None
        ev.distillation = distillation_gap(ev.per_user, ev.served_variant, teacher)
    return ev


def distillation_gap(
    per_user: dict[str, np.ndarray], served: str | None, teacher: str | None
) -> dict | None:
    """How much of the teacher the served model keeps on the same test users: its NDCG@10 as
    a share of the teacher's as it is used (`teacher`: its row with every expert the job chose
    for it: teacher+transitions, and +history with repeats kept) and the paired difference
    with its 95% interval. A share under 1 whose interval holds 0 is a gap the test users
    cannot tell from noise."""
    if served not in per_user or teacher not in per_user:
        return None
    ours, theirs = per_user[served], per_user[teacher]
    if len(ours) != len(theirs):  # each row holds every test user, in evalset order
        raise ValueError(f"{served}: {len(ours)} users, {teacher}: {len(theirs)}")
    mean, low, high = paired_gain(ours - theirs)
    share = round(float(ours.mean() / theirs.mean()), 4) if theirs.mean() > 0 else None
    return {
        "served": served,
        "teacher": teacher,
        "share": share,  # None: the teacher never hit, so no share (strict JSON has no NaN)
        "paired": [round(mean, 4), round(low, 4), round(high, 4)],
        "users": len(ours),
    }


def _against_cooccurrence(ev: Evaluation) -> None:
    """Each test row's NDCG@10 minus co-occurrence's on the same users, paired, with its 95%
    interval ("ndcg@10_vs_cooccurrence": [mean, low, high] in the row's full protocol): is a
    model ahead of counting beyond noise? Refit rows against the refit co-occurrence. The
    arrays already hold every rank's users, so the interval is taken here, not all-reduced."""
    for label, values in ev.per_user.items():
        base = "cooccurrence_refit" if label.endswith("_refit") else "cooccurrence"
        if label == base or base not in ev.per_user:
            continue
        mean, low, high = paired_gain(values - ev.per_user[base])
        ev.metrics[label]["test"]["full"]["ndcg@10_vs_cooccurrence"] = [mean, low, high]


def evaluate_baselines(
    split: Split,
    negatives: dict,
    cfg: RunConfig,
    refit: bool,
    costs: dict | None,
    short: bool = False,
    per_user: dict[str, np.ndarray] | None = None,
    valid_per_user: dict[str, np.ndarray] | None = None,
) -> dict:
    """Popularity, co-occurrence, content TF-IDF (with a catalog) and the collaborative-
    filtering baselines (training/cf.py, tuned on valid), each also fitted on train + valid
    when the teacher is refitted.
    `per_user`: filled with each counting baseline's per-user test NDCG@10 (ties in
    expectation), for the paired comparisons; `valid_per_user` the same on valid (the
    cold-start choice, training/cold_start.py)."""
    eval_kw = {"batch_size": cfg.train.eval_batch_size, "seed": cfg.train.seed}
    metrics: dict = {}
    record: dict = {}
    on = {"": split} | ({"_refit": split.with_valid_in_train()} if refit else {})
    content = split.data.content is not None
    tfidf = content and split.data.n_items <= TFIDF_MAX_ITEMS
    for suffix, fitted_on in on.items():
        names = ("test",) if suffix else ("valid", "test")
        makers: list = [Popularity, RecentPopularity, CoOccurrence]
        if not split.exclude_seen:  # repeats kept: the user's own items are candidates
            makers += [OwnFrequent, OwnRecent]
        # The content-only baseline (the new items' table); reads no training row, so its
        # refit would be the same row.
        if tfidf and not suffix:
            makers.append(ContentTfidf)
        for make in makers:
            began = time.perf_counter()
            baseline = make(fitted_on)
            label = baseline.name + suffix
            metrics[label] = {}
            for name in names:
                kw: dict[str, Any] = dict(eval_kw)
                into = per_user if name == "test" else valid_per_user
                if into is not None:
                    kw["per_user"] = into[label] = np.zeros(len(split.evalset(name)))
                evalset = split.evalset(name)
                metrics[label][name] = evaluate(baseline, split, evalset, negatives[name], **kw)
            record[baseline.name + suffix] = {"seconds": round(time.perf_counter() - began, 2)}
    if content and not tfidf:
        why = f"{split.data.n_items:,} items > {TFIDF_MAX_ITEMS:,} (training.baselines)"
        record[ContentTfidf.name] = {"skipped": why}
    skip = "the job was short of time (under a tenth of its budget left)" if short else ""
    first = cfg.train.cf_grid == "first"
    cf_metrics, cf_record = evaluate_cf(split, negatives, refit, skip, first, **eval_kw)
    if costs is not None:
        costs |= record | cf_record
    return metrics | cf_metrics
