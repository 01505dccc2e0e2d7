"""The training job, as named steps: prepare data, build the teacher, train, evaluate, export."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import platform
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from lmrec.bundle import distillation_line
from safetensors.torch import save_file

from training import champion, checkpoint, shared_data
from training.bundle_writer import write_bundle
from training.cold_start import cold_start_line
from training.config import RunConfig, not_identity
from training.count_targets import successors
from training.data import DataError, Interactions, load_interactions
from training.dist import DistEnv, barrier
from training.distill import Distiller, init_from_teacher
from training.ensemble import TeacherEnsemble, as_teacher
from training.evaluate import sample_negatives
from training.evaluation import Evaluation, evaluate_job
from training.hybrid import TeacherBoost, prefer_distilled
from training.item_content import item_content
from training.item_init import ItemInit
from training.model import SASRec
from training.model_swap import staged
from training.plan import Budget, PhaseClock, adapt, student_regularisers
from training.report import results_table, write_report
from training.sagemaker import Paths
from training.split import Split, make_split
from training.ties import tie_mode
from training.trainer import FitResult, Phase, fit

log = logging.getLogger(__name__)


def _load(paths: Paths, cfg: RunConfig, env: DistEnv | None) -> Interactions:
    """One copy per host under DDP (training/shared_data.py), else a plain load."""
    if env is None or not env.enabled:
        return load_interactions(paths.train, cfg.data, paths.items)
    directory = shared_data.shared_dir()
    data = None
    if env.local_rank == 0:
        data = load_interactions(paths.train, cfg.data, paths.items)
        shared_data.save(data, directory)
    barrier(env)
    return data if data is not None else shared_data.load(directory)


def prepare_data(
    paths: Paths, cfg: RunConfig, env: DistEnv | None = None
) -> tuple[Interactions, Split, dict]:
    """Load and split the data, fill the sizes left to the data (plan.adapt: recorded in
    data.stats["chosen"]), pick the evaluated users and their sampled negatives."""
    read_at = datetime.now(UTC).isoformat(timespec="seconds")
    data = _load(paths, cfg, env)
    data.content = item_content(data, cfg.data)
    if data.content is not None:
        readers = cfg.data.content_models if cfg.student.student else "teacher"
        if readers == "teacher" and cfg.data.content_models == "student":
            readers = "none"  # the students would read it, and none is trained
        data.stats["content"] = data.content.describe() | {"models": readers}
    data.stats["read_at"] = read_at  # data uploaded after this is new to the retrain function
    data.stats["chosen"] = adapt(cfg, data, say=env is None or env.is_main)
    keep = data.stats.get("repeats", {}).get("mode") == "keep"
    split = make_split(data, cfg.data.split, exclude_seen=not keep)
    if data.content is not None:  # items no training row holds: content alone, as served
        data.content.trained = ~split.never_trained
    if not len(split.test):
        raise DataError(
            f"split={split.name}: no user can be evaluated (a user needs three interactions; "
            "split=time says what it needs itself)"
        )
    if len(split.valid) < FEW_VALID_USERS and (env is None or env.is_main):
        print(few_valid_users(split), file=sys.stderr, flush=True)
    split.sample_eval_users(cfg.train.eval_users, seed=cfg.train.seed + 3)
    n_neg, seed = cfg.train.sampled_negatives, cfg.train.seed
    negatives = {
        "valid": sample_negatives(split, split.evalset("valid"), n_neg, seed=seed + 1),
        "test": sample_negatives(split, split.evalset("test"), n_neg, seed=seed + 2),
    }
    return data, split, negatives


# Valid users below which what is chosen on valid (epochs, weights, the served model) is
# mostly noise: ML-100K under split=time has 29 (its last ratings come from few users).
FEW_VALID_USERS = 100


def few_valid_users(split: Split) -> str:
    """One line for a job whose choices rest on too few valid users."""
    why = (
        " (the log's last interactions come from few users; split=loo evaluates every user "
        "with three interactions)"
        if split.name == "time"
        else ""
    )
    return (
        f"split={split.name}: only {len(split.valid)} valid users (fewer than "
        f"{FEW_VALID_USERS}): the epochs, weights and served model chosen on them are mostly "
        f"noise{why}"
    )


def build_teacher(cfg: RunConfig, data: Interactions, seed: int | None = None) -> SASRec:
    cfg.model.n_items = data.n_items
    torch.manual_seed(cfg.train.seed if seed is None else seed)
    return SASRec(cfg.model, data.content if cfg.data.content_models == "all" else None)


def member_names(prefix: str, n: int) -> list[str]:
    """Phase names of n ensemble members: the first keeps the plain name (its checkpoints,
    history and SageMaker metric lines are those of a one-teacher run)."""
    return [prefix] + [f"{prefix}_{i}" for i in range(2, n + 1)]


# Settings that do not change the weights a phase produces (declared hp(..., identity=False)
# in training/config.py); everything else in the configuration is part of a checkpoint's
# identity.
_NOT_IDENTITY = not_identity()


def _identity(phase: Phase, cfg: RunConfig, data: Interactions, env: DistEnv) -> dict:
    """What a checkpoint must match to be resumed: the data, the whole configuration but
    the settings above, and the phase (a refit's epochs and learning rates)."""
    flat = {k: v for section in cfg.to_dict().values() for k, v in section.items()}
    if phase.name.startswith("teacher"):  # a teacher does not depend on the students
        flat = {k: v for k, v in flat.items() if not k.startswith(("student_", "distill_"))}
        flat.pop("teachers")
    identity = {
        "phase": phase.name,
        "data_fingerprint": data.fingerprint,
        "config": {k: v for k, v in sorted(flat.items()) if k not in _NOT_IDENTITY},
        "model": dataclasses.asdict(phase.model.cfg),
        "epochs": phase.epochs if not phase.select_best else None,
        "lr_by_epoch": phase.lr_by_epoch,
        "seed": cfg.train.seed if phase.seed is None else phase.seed,
        # what the phase trains with (the students' own may differ from the configuration:
        # plan.student_regularisers), so a student never resumes another job's optimizer
        "regularisers": list(phase.regularisers(cfg.train)),  # a list: JSON reads one back
        "world_size": env.world_size,
        # the order training reads ties in: tie_order=auto resolves it from the data
        "ties": tie_mode(data, cfg.data.tie_order),
    }
    if phase.model.content is not None and data.content is not None:
        identity["content"] = data.content.digest  # the interactions' fingerprint omits it
    keep = phase.model._id_keep
    if keep is not None:  # which items content alone places: a refit's are not the teacher's
        identity["content_only"] = _digest(keep.cpu().numpy().tobytes())
    return identity


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


class _Trainer:
    """Runs phases one after the other and keeps what each produced, by phase name."""

    def __init__(self, paths, cfg, env, data, split, negatives, stop, budget: Budget):
        self.paths, self.cfg, self.env, self.data = paths, cfg, env, data
        self.split, self.negatives, self.stop = split, negatives, stop
        self.budget = budget
        self.boost = TeacherBoost()
        self.clock: PhaseClock | None = None
        self.out: dict[str, tuple[SASRec, FitResult]] = {}
        self._inits: dict[int, ItemInit] = {}  # by split: the refit's differs
        self._successors: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # likewise

    def init_items(self, model: SASRec, split: Split) -> None:
        """item_init=cooccurrence: the id table from the split's co-occurrence."""
        if self.cfg.train.item_init != "cooccurrence":
            return
        if id(split) not in self._inits:  # the teacher's width (item_init.py)
            self._inits[id(split)] = ItemInit(split, self.cfg.model.d_model)
        self._inits[id(split)].apply(model.item_emb)

    def successors(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """count_targets: the split's successor table, counted once for every teacher."""
        if id(split) not in self._successors:
            self._successors[id(split)] = successors(split)
        return self._successors[id(split)]

    def run(self, phase: Phase, on: Split | None = None) -> None:
        paths = self.paths
        phase.deadline = self.budget.deadline(phase.name)
        ckpt = paths.checkpoints / phase.name if paths.checkpoints else None
        identity = _identity(phase, self.cfg, self.data, self.env)
        result = fit(
            phase,
            on or self.split,
            self.cfg,
            self.env,
            self.negatives["valid"],
            ckpt,
            self.stop,
            identity,
        )
        phase.model.set_soft_targets(None, None, 0.0)  # trained: its table is no longer read
        self.out[phase.name] = (phase.model, result)
        if self.clock is not None:
            self.clock.done(phase.name)

    def member(self, name: str, i: int, epochs: int, on: Split | None = None, **kw) -> Phase:
        """Ensemble member i (0-based) or its refit (trained `on` another split): a fresh
        teacher with seed + i."""
        t = self.cfg.train
        model = build_teacher(self.cfg, self.data, t.seed + i)
        self.init_items(model, on or self.split)
        if t.count_targets > 0:
            model.set_soft_targets(*self.successors(on or self.split), t.count_targets)
        return Phase(
            name,
            model,
            t.lr,
            epochs,
            max_seconds=t.max_train_seconds,
            input_noise=t.input_noise,
            seed=t.seed + i,
            eval_from=t.eval_from,
            **kw,
        )


def _train_teachers(tr: _Trainer) -> list[SASRec]:
    names = member_names("teacher", tr.cfg.train.teachers)
    for i, name in enumerate(names):
        tr.run(tr.member(name, i, tr.cfg.train.epochs))
    return [tr.out[name][0] for name in names]


def _train_students(tr: _Trainer, members: list[SASRec]) -> None:
    """The distilled student, then (with student_plain) the same student trained alone."""
    t, s, n_items = tr.cfg.train, tr.cfg.student, tr.data.n_items
    budget = s.student_max_seconds or t.max_train_seconds
    teacher = as_teacher(members)
    torch.manual_seed(t.seed + 1)
    student = SASRec(s.model_config(n_items), tr.data.content)
    init_from_teacher(student, members[0])
    boost = None
    if s.transitions and s.distill_transitions:  # distil the teacher as it is used
        plain = tr.cfg.train.teachers > 1  # an ensemble: training kept no valid figures
        boost = tr.boost.choose(teacher, tr.split, tr.negatives["valid"], tr.cfg, tr.env, plain)
    distiller = Distiller(student, teacher, s, boost)
    decay, ema = student_regularisers(tr.cfg)
    tr.run(
        Phase(
            "student",
            student,
            s.student_lr,
            s.student_epochs,
            train_module=distiller,
            context_len=teacher.cfg.max_len,
            max_seconds=budget,
            weight_decay=decay,
            ema_decay=ema,
        )
    )
    if s.student_plain:
        torch.manual_seed(t.seed + 2)
        plain = SASRec(s.model_config(n_items), tr.data.content)
        tr.init_items(plain, tr.split)
        tr.run(
            Phase(
                "student_plain",
                plain,
                s.student_lr,
                s.student_epochs,
                max_seconds=budget,
                weight_decay=decay,
                ema_decay=ema,
            )
        )


def _refit_teachers(tr: _Trainer) -> None:
    """Each member's selected epoch count, on one more interaction per user: the test item
    stays unseen."""
    t = tr.cfg.train
    names = member_names("teacher", t.teachers)
    refit_names = member_names("teacher_refit", t.teachers)
    on = tr.split.with_valid_in_train()
    content = tr.data.content
    mask = content.trained if content is not None else None
    if content is not None:  # the items valid rows hold are trained now: their id rows too
        content.trained = ~on.never_trained
    try:
        for i, (name, refit_name) in enumerate(zip(names, refit_names, strict=True)):
            selected = tr.out[name][1]
            epochs = max(selected.best_epoch, 1)
            schedule = [row["lr"] for row in selected.history[:epochs]]  # replayed
            phase = tr.member(refit_name, i, epochs, on=on, select_best=False, lr_by_epoch=schedule)
            tr.run(phase, on=on)
    finally:  # the served models' bundle and evaluation keep the main split's mask
        if content is not None:
            content.trained = mask


def train_models(
    paths: Paths,
    cfg: RunConfig,
    env: DistEnv,
    data: Interactions,
    split: Split,
    negatives: dict,
    stop: threading.Event,
    budget: Budget | None = None,
    clock: PhaseClock | None = None,
    boost: TeacherBoost | None = None,
) -> dict[str, tuple[SASRec, FitResult]]:
    """The teacher(s), then the distilled student, then the same student without
    distillation, then (with `refit`) the teacher(s) again on train + valid. `boost` receives
    the transition table and the teacher's weight chosen for distillation."""
    budget = budget or Budget(time.perf_counter())
    tr = _Trainer(paths, cfg, env, data, split, negatives, stop, budget)
    tr.clock = clock
    tr.boost = boost if boost is not None else tr.boost
    members = _train_teachers(tr)
    if cfg.student.student:
        _train_students(tr, members)
    if cfg.train.refit:  # last: a measurement, so the models that serve are trained first
        _refit_teachers(tr)
    return tr.out


def scored_models(trained: dict[str, tuple[SASRec, FitResult]], teachers: int) -> dict:
    """What is evaluated, by metrics name. With several teachers, "teacher" (and
    "teacher_refit") is the ensemble and "teacher_1", "teacher_2", ... are its members."""
    models = {name: model for name, (model, _) in trained.items()}
    if teachers == 1:
        return models
    out = {}
    for prefix in ("teacher", "teacher_refit"):
        names = member_names(prefix, teachers)
        if names[0] not in models:
            continue
        members = [models.pop(name) for name in names]
        out[prefix] = as_teacher(members)
        if prefix == "teacher":  # each member alone, to show what the ensemble adds
            out |= {f"teacher_{i}": m for i, m in enumerate(members, start=1)}
    return out | models


def measured_valid(
    models: dict[str, SASRec | TeacherEnsemble], trained: dict[str, tuple[SASRec, FitResult]]
) -> dict[str, dict]:
    """Valid figures training already measured on the very weights each evaluated model holds,
    by evaluated name. Matched by object, not name: with several teachers "teacher" is the
    ensemble (never measured) while the trained "teacher" is its first member."""
    by_model = {id(m): fit.best_valid_metrics for m, fit in trained.values()}
    return {name: by_model[id(m)] for name, m in models.items() if by_model.get(id(m))}


def _save_weights(out, cfg: RunConfig, trained: dict[str, tuple[SASRec, FitResult]]) -> None:
    """Teacher(s) and the student as safetensors; student_plain and refits only serve as
    measurements."""
    for name in [*member_names("teacher", cfg.train.teachers), "student"]:
        if name in trained:
            model = trained[name][0]
            weights = {
                k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()
            }
            save_file(weights, out / f"{name}.safetensors")
            (out / f"{name}_config.json").write_text(
                json.dumps(dataclasses.asdict(model.cfg), indent=1)
            )


def _model_summary(model: SASRec, fit_result: FitResult) -> dict:
    return {
        "best_epoch": fit_result.best_epoch,
        "epochs_run": len(fit_result.history),
        "train_seconds": fit_result.train_seconds,
        "sequences_per_second": fit_result.sequences_per_second,
        "parameters": sum(p.numel() for p in model.parameters()),
        # Per request with a full window of history: see SASRec.macs_per_request.
        "macs_per_request": model.macs_per_request(model.cfg.max_len),
    }


def _summary(
    cfg: RunConfig,
    env: DistEnv,
    data: Interactions,
    split: Split,
    trained: dict[str, tuple[SASRec, FitResult]],
    wall_seconds: float,
) -> dict:
    teacher_phases = member_names("teacher", cfg.train.teachers)
    teacher_fit = trained["teacher"][1]
    device = str(env.device)
    if env.device.type != "cpu":
        device = torch.cuda.get_device_name(env.device)
    return {
        "data_fingerprint": data.fingerprint,
        "data": data.stats,
        "evaluated_users": len(split.evalset("test")),
        "split": split.describe(),
        "ties": data.stats.get("ties"),
        "repeats": data.stats.get("repeats"),
        "eligible_users": len(split.test),
        "chosen": data.stats.get("chosen", {}),
        "best_epoch": teacher_fit.best_epoch,
        # Time to the teacher: every member's training (validation excluded).
        "train_seconds": sum(trained[name][1].train_seconds for name in teacher_phases),
        "teacher_phases": teacher_phases,
        "sequences_per_second": teacher_fit.sequences_per_second,
        "wall_seconds": wall_seconds,
        "device": device,
        "world_size": env.world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "models": {name: _model_summary(model, fr) for name, (model, fr) in trained.items()},
    }


def _served_why(
    trained: dict[str, tuple[SASRec, FitResult]], served: str, record: dict | None = None
) -> str:
    if record is not None:  # chosen with each model's transition weight
        by_weight, weight = record["valid_ndcg@10_by_weight"], record["weight"]
        figures = ", ".join(
            f"{name} {max(by_weight[name]):.4f} (transition weight {weight[name]:g})"
            for name in ("student", "student_plain")
            if name in by_weight
        )
        paired = record.get("plain_minus_distilled_valid")
        if paired is None:
            return f"best valid NDCG@10 of the small models with their transitions: {figures}"
        mean, lo, hi = paired
        return (
            f"valid NDCG@10 with their transitions: {figures}; student_plain - student "
            f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] paired over the same users: the distilled "
            "student unless student_plain is ahead beyond noise"
        )
    figures = ", ".join(
        f"{name} {trained[name][1].best_valid_ndcg:.4f}"
        for name in ("student", "student_plain")
        if name in trained
    )
    return f"best valid NDCG@10 of the small models: {figures}"


SPLITS = {
    "loo": "leave-one-out by time: last interaction = test, the one before = valid; "
    "users with < 3 interactions train only",
    "time": "time: R(c) = a user's first interaction at or after c given all before c; "
    "valid = R(c_v), test = R(c_t) (c_v, c_t leave 10%, 5% of interactions at or after them; "
    "a valid target is before c_t); train before c_v; users known before c_v are evaluated "
    "(valid and test users differ)",
}


def _protocol(cfg: RunConfig, split: Split) -> dict:
    seen = "user's seen items excluded" if split.exclude_seen else "seen items ranked too"
    out = {
        "split": SPLITS[split.name],
        "split_name": split.name,
        "full": f"held-out item ranked against every catalog item, {seen}",
        f"sampled{cfg.train.sampled_negatives}": "held-out item ranked against "
        f"{cfg.train.sampled_negatives} uniformly "
        "sampled items the user never interacted with (Kang & McAuley 2018)",
        "k": 10,
        "ties": "broken uniformly at random (seeded)",
        "users": "every evaluable user, or a fixed seeded sample of eval_users of them (loo: "
        "the same users for valid and test; time: each part its own)",
        "ci95": "<metric>_ci95: [low, high], the normal-approximation 95% interval of the mean "
        "over users",
    }
    if not split.exclude_seen:
        out["full_repeat"] = "full, over the users whose target is already in their history"
        out["full_explore"] = "full, over the users whose target is new to them"
    if split.never_trained.any():
        out["full_new"] = (
            "full, over the users whose target has no training row (an item first seen after "
            "the training cut: a model reading the catalog knows it by its content alone, as "
            "it serves an item added after the data was cut)"
        )
    return out


def export(paths: Paths, *args, **kwargs) -> dict:
    """write_output into a folder staged in the model dir, swapped in whole at the end: a run
    that fails or is stopped while exporting keeps the previous model (training/sagemaker.py)."""
    with staged(paths.model_dir) as out:
        return write_output(out, *args, **kwargs)


def write_output(
    out: Path,
    cfg: RunConfig,
    env: DistEnv,
    data: Interactions,
    split: Split,
    trained: dict[str, tuple[SASRec, FitResult]],
    ev: Evaluation,
    wall_seconds: float,
    clock: PhaseClock | None = None,
    against_production: dict | None = None,
) -> dict:
    """Weights, history, metrics.json, the report and the bundle. `ev`: the evaluation (the
    metrics, the served model with its table and history expert, and how they were
    chosen). `clock`: the phases so far (seconds, peak memory), recorded in summary.phases.
    `against_production`: production scored on the same test users (training/champion.py),
    recorded in summary.champion and the manifest for the promote function's gate."""
    served, table, expert = ev.served, ev.table, ev.expert
    _save_weights(out, cfg, trained)
    histories = {name: fit_result.history for name, (_, fit_result) in trained.items()}
    (out / "history.json").write_text(json.dumps(histories, indent=1))
    summary = _summary(cfg, env, data, split, trained, wall_seconds)
    if clock is not None:
        summary["phases"] = clock.phases
    if served:
        weight = table.weight if table is not None else 0.0
        summary["served"] = {"model": served, "transitions_weight": weight}
        if expert is not None:
            summary["served"]["history_weight"] = expert.weight
        summary["served_why"] = _served_why(trained, served, ev.transitions)
    if ev.transitions is not None:
        summary["transitions"] = ev.transitions
    if ev.distillation is not None:
        summary["distillation"] = ev.distillation
    if ev.cold_start is not None:
        summary["cold_start"] = ev.cold_start
    if ev.history is not None:
        summary["history_expert"] = ev.history
    if against_production is not None:
        summary["champion"] = against_production
    if ev.costs:
        summary["baselines"] = ev.costs
    if ev.new_items is not None:  # lmrec.content.new_item_scores, and RowLift in serving
        summary["new_items"] = ev.new_items
    document = {
        "metrics": ev.metrics,
        "protocol": _protocol(cfg, split),
        "seeds": {
            "train": cfg.train.seed,
            "valid_negatives": cfg.train.seed + 1,
            "test_negatives": cfg.train.seed + 2,
        },
        "data_fingerprint": data.fingerprint,
        "config": cfg.to_dict(),
        "summary": summary,
    }
    (out / "metrics.json").write_text(json.dumps(document, indent=1))
    write_report(out, ev.metrics, histories, summary, cfg.to_dict())
    if served:  # the model directory becomes a servable bundle
        manifest = write_bundle(
            out,
            trained[served][0],
            data,
            document,
            cfg.student.item_table_dtype,
            cfg.data.category_column,
            transitions=table,
            history=expert,
        )
        document["model_version"] = manifest["model_version"]
    return document


def choose_served(trained: dict[str, tuple[SASRec, FitResult]], users: int) -> str:
    """The small model to serve: the distilled student, or the one trained alone when it is
    better on valid beyond a tie (NDCG@10 at its selected epoch, hybrid.prefer_distilled);
    test figures play no part."""
    small = [name for name in ("student", "student_plain") if name in trained]
    return prefer_distilled({name: trained[name][1].best_valid_ndcg for name in small}, users)


def _is_short(budget: Budget, total: float) -> bool:
    return bool(total) and budget.left() <= 0.1 * total


def _short_of_time(
    models: dict, served: str | None, short: bool
) -> dict[str, SASRec | TeacherEnsemble]:
    """With under a tenth of the budget left, only the teacher and the served model are
    evaluated (the rest are measurements, not needed for a bundle)."""
    if not short:
        return models
    log.warning("little time left: evaluating the teacher and %s only", served or "no student")
    return {name: m for name, m in models.items() if name in ("teacher", served)}


def say_resume(paths: Paths) -> None:
    """One line when an earlier run left checkpoints: a rerun would otherwise continue
    from them without a word."""
    root = paths.checkpoints
    if root is None or not root.is_dir():
        return
    found = sorted(d.name for d in root.iterdir() if (d / checkpoint.STATE).is_file())
    if found:
        print(
            f"resuming from {root}: each phase whose data and settings match its checkpoint "
            f"({', '.join(found)}) continues from there; `lmrec train --fresh` starts over",
            file=sys.stderr,
            flush=True,
        )


def run(paths: Paths, cfg: RunConfig, env: DistEnv, stop: threading.Event) -> dict | None:
    """The job, in order: data -> split -> teacher(s) -> students -> one evaluation (valid
    once and test once per model: metrics, transition weights, the served model, the gate's
    figures) -> production on the same users -> export."""
    began = time.perf_counter()
    if env.is_main:
        say_resume(paths)
    budget, clock = Budget(began, teacher_share=cfg.train.teacher_share), PhaseClock(began)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    data, split, negatives = prepare_data(paths, cfg, env)
    budget.total = cfg.train.max_total_seconds  # known now: plan.adapt may derive it
    clock.done("data")
    if env.is_main:
        log.info(
            "split: %d users evaluated, %d train interactions",
            len(split.evalset("test")),
            int(split.train_len.sum()),
        )
    boost = TeacherBoost()
    trained = train_models(paths, cfg, env, data, split, negatives, stop, budget, clock, boost)
    served = choose_served(trained, len(split.evalset("valid"))) if "student" in trained else None
    short = _is_short(budget, budget.total)
    models = _short_of_time(scored_models(trained, cfg.train.teachers), served, short)
    known = measured_valid(models, trained)
    ev = evaluate_job(models, known, served, split, negatives, cfg, env, boost, short)
    clock.done("evaluate")
    document = None
    if env.is_main:
        # The gate's input: production on these very test users, beside the served model's
        # own per-user figures from the evaluation.
        against = None
        if ev.served_variant in ev.per_user:
            against = champion.for_job(ev.per_user[ev.served_variant], split)
            clock.done("champion")
        wall = time.perf_counter() - began
        document = export(paths, cfg, env, data, split, trained, ev, wall, clock, against)
        print(results_table(ev.metrics, ev.served_variant or "student"), flush=True)
        if ev.served:
            why = document["summary"]["served_why"]
            print(f"served: {ev.served_variant} ({why})", flush=True)
        lines = (
            distillation_line(ev.distillation),
            cold_start_line(ev.cold_start),
            champion.summary_line(against),
        )
        for line in lines:
            if line:
                print(line, flush=True)
    barrier(env)
    return document
