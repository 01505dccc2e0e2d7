"""What the job adapts to the data, and how it splits its time budget.

Sizes. A user who sets nothing gets values that fit the data's size (below); everything set
explicitly, by hand or by a preset, is kept. The choices are printed and recorded in
metrics.json ("summary.chosen").

- loss: the full softmax up to FULL_SOFTMAX_MAX_ITEMS catalog items, sampled above
  (training/sampling.py); num_negatives never more than the catalog holds (with a warning).
- d_model (the teacher's width): 128 with the full softmax, 64 with the sampled loss. Where
  the catalog is small enough for the full softmax, the wider teacher learned more per
  CPU second (ML-100K and the S rung: docs/experiments.md, "Teacher study"); with the
  sampled loss at 75k items d_model 128 was behind at 300 s (rung M, the same page).
- epochs / student_epochs: an epoch is one pass over the interactions, so large logs need
  fewer: about 5M interaction-visits in all, between 1 and 100 epochs (MovieLens 100K: 50,
  1.2M interactions: 4, 12.6M: 1); early stopping usually ends small data sooner.
- batch_size: 128 windows, 256 from a million interactions (fewer, larger steps), halved
  (down to 32) while an epoch would have fewer than MIN_STEPS = 64 steps. Small logs need
  the steps: on MovieLens 100K (943 users: 2,412 windows of 50 items) batches of 32 reached
  test NDCG@10 0.1007 in the CPU time where batches of 128 reached 0.0803 (the teacher
  study in docs/experiments.md). Games (31k windows) and the scale rungs keep 128 / 256.
- student_lr: 2e-3 with the full softmax, 1e-3 with the sampled loss (STUDENT_LR).
- weight_decay 0.1 and ema_decay 0.99 for the teachers with the full softmax (REGULARISERS),
  unless set. With the job's defaults (co-occurrence start, 480 s floor), side by side on
  six data sets (seven jobs): the teacher alone on MovieLens 100K 0.1035 -> 0.1161 and
  0.0942 -> 0.1131 (two seeds; ahead of co-occurrence beyond noise at the first),
  CollegeMsg +0.0048, Wikipedia +0.0009, rung S, ml-latest-small and Online Retail within
  0.0006; the served model tied in all seven jobs (-0.0027 to +0.0036, paired). Measured
  first at random starts and a shorter goal, where the teachers that got 5 epochs lost
  (-0.003, -0.005), it was not kept then (docs/experiments.md, "Regularisers as defaults"
  and "The teachers' regularisers again"). The students keep 0 unless these are set: in
  their short budgets the average lags (S rung, 2026-12-06, random start: student 0.2728
  with them, 0.2803 without); the job's line says `regularised=teachers`. With the
  sampled loss they changed nothing measurable on Games, so none.
- patience: 5 evaluations without a better valid NDCG@10, 2 from a million interactions
  (each evaluation costs more there and the curve is smoother).
- eval_users: at most 10,000 evaluated users, a fixed seeded sample (TrainConfig.eval_users).
- student_epochs: the teacher's epochs (set or chosen), so `--set epochs=N` bounds the
  students too; set student_epochs to give them another count.
- max_total_seconds: unless set, a time goal from the data's size: 120 s plus 400 s per
  million interactions, at least 480 s and at most 3,000 s (10k users / 95k interactions:
  480 s; 100k / 0.9M: 480 s; 1M / 10M: 3,000 s), so the job fits the issue's goals on two
  CPU cores (M under 10 minutes, L under an hour) with room for loading, the last evaluation
  and the export. Why the floor (GOAL_MIN): under 120 s + 400 s/M the teachers of logs below
  600k interactions stopped on their deadline after 1-4 epochs, on the best epoch so far in
  four of six jobs (ml-latest-small, 9.7k items under the full softmax: one epoch; Games and
  rung S three). At 360 s the served model rose or tied on seven data sets, beyond noise on
  Games (+0.0019, 30,901 users) and rung S (+0.0136); 480 s over 360 s, served: beyond noise
  on rung S (+0.0146), Games (+0.0015) and Online Retail (+0.0036), ties on MovieLens 100K,
  ml-latest-small and Wikipedia, on CollegeMsg -0.0054 [-0.0088, -0.0020] at seed 42 (the
  student's longer run chose a later epoch, better on valid, worse on test) and a tie at
  seed 43; the teacher alone rose or held on all (docs/experiments.md, "A floor under the
  time goal" and "The floor at 480 s"). 480 s is rung M's own goal, so M is unchanged. The
  retrain's MaxRuntimeInSeconds is at least 900 s for it (lmrec.settings).
  Setting epochs keeps the budget: under a budget the epochs (set or auto) are a ceiling,
  auto being MAX_EPOCHS instead of the interaction-visits count, and the phase deadlines
  (below) and early stopping decide where each phase stops (measured at 100k users: the
  teacher's 6 visit-count epochs took 170 of its 241 s and valid NDCG@10 was still rising).
  Only max_total_seconds=0 trains without one; the presets say so explicitly, and
  `lmrec train --quick` is config.QUICK_SECONDS. `budget_line` prints what the job runs under.

Time. With max_total_seconds, every phase gets a deadline from the job's start: teachers
until 40% of the budget (teacher_share), the distilled student until 70%, the plain student
until 80%, refits until 85%; evaluation and export use the rest. A phase past its deadline
ends its epoch early, evaluates it and stops, so the job always ends with a bundle (or a clear error
if even the data could not be read in time).
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from training.config import ConfigError, RunConfig
from training.data import Interactions
from training.sampling import choose_loss, clamp_negatives

log = logging.getLogger(__name__)

LARGE_LOG = 1_000_000  # interactions
VISITS = 5_000_000  # interaction-visits the epoch count aims at
MAX_EPOCHS = 100  # the ceiling of auto epochs; under a time budget, the epoch count
GOAL_BASE, GOAL_PER_MILLION, GOAL_MAX = 120.0, 400.0, 3_000.0  # seconds, see time_goal
GOAL_MIN = 480.0  # the floor of the time goal (module docstring: why)
# Where each phase must end, as a share of the budget; the teachers' is teacher_share, and
# what it leaves before 70% goes to the distilled student (Budget.share). 0.4 rather than the
# first 0.5: the teachers' last tenth bought them little (rung M: the same best epoch; one
# thread) while the distilled student, still climbing when its deadline came, got 1.5x the
# time; served test NDCG@10 0.5 -> 0.4 on ML-100K 0.1061 -> 0.1099, Games 0.0605 -> 0.0620,
# S 0.3182 -> 0.3220, M 0.3081 -> 0.3127 (docs/experiments.md, "The teachers' share").
SHARES = {"teacher": 0.40, "student": 0.70, "student_plain": 0.80, "teacher_refit": 0.85}
# The students' learning rate by loss. With the sampled loss 2e-3 peaks after one epoch and
# then falls (M: valid 0.2686, 0.2655; L: 0.2433, 0.2404) while 1e-3 goes on to the
# teacher's level (M: 0.2564, 0.2810; test 0.2798 against the teacher's 0.2740 and 0.2656 at
# 2e-3), measured side by side on the same teacher (docs/experiments.md).
STUDENT_LR = {"full": 2e-3, "sampled": 1e-3}
D_MODEL = {"full": 128, "sampled": 64}  # the teacher's width by loss
# Defaults by loss for names left unset (not "0 = auto": 0 is a valid setting of both).
REGULARISERS = {"full": {"weight_decay": 0.1, "ema_decay": 0.99}, "sampled": {}}
MIN_STEPS, MIN_BATCH = 64, 32  # steps an epoch at least, and the smallest automatic batch


def student_regularisers(cfg: RunConfig) -> tuple[float | None, float | None]:
    """The students' own (weight_decay, ema_decay): 0 for each one the plan chose for the
    teachers (REGULARISERS), None where the user set it (it then applies to every model)."""
    auto = {n for n in REGULARISERS[cfg.train.loss] if n not in cfg.given}
    decay, ema = (0.0 if n in auto else None for n in ("weight_decay", "ema_decay"))
    return decay, ema


def _auto_epochs(interactions: int) -> int:
    return int(min(MAX_EPOCHS, max(1, round(VISITS / max(interactions, 1)))))


def _auto_batch(data: Interactions, max_len: int, large: bool) -> int:
    """The usual batch, halved until an epoch (one window per max_len training items of a
    user, training.batching.training_windows) has MIN_STEPS steps, down to MIN_BATCH."""
    n = np.maximum(data.lengths() - 2, 0)  # training items: the last two are valid and test
    windows = int(np.maximum(1, -(-(n - 1) // max_len)).sum())
    batch = 256 if large else 128
    while batch > MIN_BATCH and windows < MIN_STEPS * batch:
        batch //= 2
    return batch


def time_goal(interactions: int) -> float:
    """The default whole-job budget in seconds for a log of this many interactions."""
    goal = GOAL_BASE + GOAL_PER_MILLION * interactions / 1e6
    return float(round(min(GOAL_MAX, max(GOAL_MIN, goal))))


def _default_budget(cfg: RunConfig, interactions: int) -> float:
    """The budget given, or the time goal: only max_total_seconds=0 means none."""
    t = cfg.train
    if "max_total_seconds" not in cfg.given:
        t.max_total_seconds = time_goal(interactions)
    return t.max_total_seconds


def adapt(cfg: RunConfig, data: Interactions, say: bool = True) -> dict:
    """Fill every size left at 0/"auto" from the data; return what was chosen."""
    t, s, given = cfg.train, cfg.student, cfg.given
    n_int, large = len(data.items), len(data.items) >= LARGE_LOG
    chosen: dict = {}
    t.loss = chosen["loss"] = choose_loss(t.loss, data.n_items)
    if t.loss == "sampled":
        t.num_negatives = chosen["num_negatives"] = clamp_negatives(t.num_negatives, data.n_items)
    budget = _default_budget(cfg, n_int)
    t.epochs = t.epochs or (MAX_EPOCHS if budget else _auto_epochs(n_int))
    defaults = [
        (t, "epochs", t.epochs),
        (s, "student_epochs", t.epochs),  # the teacher's, set or chosen
        (t, "batch_size", _auto_batch(data, cfg.model.max_len, large)),
        (t, "patience", 2 if large else 5),
        (s, "student_lr", STUDENT_LR[t.loss]),
        (cfg.model, "d_model", D_MODEL[t.loss]),
    ]
    for section, name, value in defaults:
        if not getattr(section, name):
            setattr(section, name, value)
        chosen[name] = getattr(section, name)
    for name, value in REGULARISERS[t.loss].items():
        if name not in given:
            setattr(t, name, value)
            chosen[name] = value
            # what the job's line and summary.chosen say: the students train without them
            chosen["regularised"] = "teachers"
    if cfg.model.d_model % cfg.model.n_heads:
        raise ConfigError(
            f"d_model {cfg.model.d_model} (chosen for this data) is not a multiple of "
            f"n_heads {cfg.model.n_heads}; set d_model too"
        )
    chosen["max_total_seconds"] = budget
    chosen["eval_users"] = min(t.eval_users or len(data.user_ids), len(data.user_ids))
    chosen["given"] = sorted(given)
    if say:  # stderr: stdout stays machine-readable
        text = ", ".join(f"{k}={v}" for k, v in chosen.items() if k != "given")
        print(f"chosen for this data: {text}", file=sys.stderr, flush=True)
        print(budget_line(cfg), file=sys.stderr, flush=True)
    return chosen


def _set(cfg: RunConfig, name: str) -> str:
    return " (set)" if name in cfg.given else ""


def _ends(cfg: RunConfig) -> str:
    """What bounds the training phases besides the whole-job budget."""
    t, s = cfg.train, cfg.student
    text = f"at most {t.epochs} teacher epochs{_set(cfg, 'epochs')}"
    if s.student:
        text += f", {s.student_epochs} student epochs{_set(cfg, 'student_epochs')}"
    if t.max_train_seconds:
        text += f", {t.max_train_seconds:g} s per teacher"
    if s.student and (s.student_max_seconds or t.max_train_seconds):
        text += f", {s.student_max_seconds or t.max_train_seconds:g} s per student"
    return f"{text}, patience {t.patience} evaluations"


def budget_line(cfg: RunConfig) -> str:
    """One line for the person starting the job: the time budget and what ends each phase."""
    total = cfg.train.max_total_seconds
    if not total:
        return f"time budget: none (max_total_seconds=0 set); {_ends(cfg)}"
    how = "set" if "max_total_seconds" in cfg.given else "auto from the data's size"
    phases = ["teacher"]
    if cfg.student.student:
        phases += ["student", "student_plain"] if cfg.student.student_plain else ["student"]
    budget = Budget(0.0, total, cfg.train.teacher_share)
    deadlines = ", ".join(f"{name} by {budget.deadline(name):.0f} s" for name in phases)
    return (
        f"time budget: {total:g} s for the whole job ({how}; --quick, or --set "
        f"max_total_seconds=S, 0 = none): {deadlines}; {_ends(cfg)}"
    )


@dataclass
class Budget:
    """The job's wall-clock budget from its start (time.perf_counter()); 0 = none."""

    began: float
    total: float = 0.0
    teacher_share: float = SHARES["teacher"]

    def share(self, phase: str) -> float:
        """The budget's share by the end of a phase (teacher, teacher_2, student, ...)."""
        base = "teacher_refit" if phase.startswith("teacher_refit") else phase
        base = "teacher" if base.startswith("teacher_") and base != "teacher_refit" else base
        return self.teacher_share if base == "teacher" else SHARES.get(base, 1.0)

    def deadline(self, phase: str) -> float:
        """Deadline of a phase, 0 when no budget."""
        return self.began + self.share(phase) * self.total if self.total else 0.0

    def left(self) -> float:
        if not self.total:
            return float("inf")
        return self.began + self.total - time.perf_counter()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


@dataclass
class PhaseClock:
    """Seconds and peak memory so far at the end of each phase of the job."""

    last: float = field(default_factory=time.perf_counter)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = {
            "seconds": round(now - self.last, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        self.last = now
