"""The training loop shared by teacher and students: epochs, early stopping on valid NDCG@10,
checkpoints, DDP, a time budget and SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from lmrec.student import left_pad
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from training import checkpoint
from training.averaging import WeightAverage
from training.batching import epoch_batches, replace_items, training_pairs, training_windows
from training.config import RunConfig, TrainConfig
from training.dist import DistEnv, all_reduce_arrays, any_rank
from training.evaluate import Scorer, evaluate_partial, finalize
from training.model import SASRec
from training.optim import ModelOptimizer
from training.sampling import NegativeSampler
from training.split import Split
from training.ties import tie_mode

if TYPE_CHECKING:
    from training.ensemble import TeacherEnsemble

log = logging.getLogger(__name__)


class Stopped(Exception):
    """Training was asked to stop (SIGTERM); the last finished epoch is checkpointed."""


@dataclass
class Phase:
    """One model to train: the teacher, the distilled student, or the plain student."""

    name: str
    model: SASRec  # evaluated, checkpointed and exported
    lr: float
    epochs: int
    train_module: torch.nn.Module | None = None  # computes the loss; default: `model`
    context_len: int | None = None  # width of training batches; default: model.cfg.max_len
    max_seconds: float = 0.0
    # False for a refit: no valid evaluation (valid is training data then); keep the last epoch.
    select_best: bool = True
    # A refit replays the selected run's learning rate, epoch by epoch (its history's "lr").
    lr_by_epoch: list[float] | None = None
    # Share of input items replaced by random catalog items while training (see TrainConfig).
    input_noise: float = 0.0
    # Batch order and dropout seed; None = the run's seed. Ensemble members differ here.
    seed: int | None = None
    # Wall-clock deadline (time.perf_counter()) from the job's total budget; 0 = none. An
    # epoch that reaches it ends early, is evaluated and is the last.
    deadline: float = 0.0
    # First epoch evaluated on valid (TrainConfig.eval_from, for teachers); 1 = every epoch.
    eval_from: int = 1
    # This phase's own weight decay and weight averaging; None = TrainConfig's (the students
    # train without the teachers' automatic ones: training/plan.py student_regularisers).
    weight_decay: float | None = None
    ema_decay: float | None = None

    def regularisers(self, t: TrainConfig) -> tuple[float, float]:
        """(weight_decay, ema_decay) this phase trains with: its own, else the config's."""
        decay = t.weight_decay if self.weight_decay is None else self.weight_decay
        return decay, t.ema_decay if self.ema_decay is None else self.ema_decay

    def key(self, name: str) -> str:
        # Teacher lines keep the plain names SageMaker metric definitions look for.
        return name if self.name == "teacher" else f"{self.name}_{name}"


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_ndcg: float = -1.0
    train_seconds: float = 0.0
    sequences_per_second: float = 0.0
    # The kept weights' valid figures, from the epoch that chose them: the job's final
    # evaluation reuses them instead of scoring valid again (same users, negatives, seed).
    best_valid_metrics: dict = field(default_factory=dict)


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def model_scorer(model: SASRec | TeacherEnsemble, device: torch.device) -> Scorer:
    def score(histories: list[np.ndarray]) -> np.ndarray:
        x = torch.from_numpy(left_pad(histories, model.cfg.max_len)).to(device)
        model.eval()
        with torch.no_grad(), autocast(device):
            return model.score(x).float().cpu().numpy()

    return score


def evaluate_sharded(
    scorer, split: Split, evalset, negatives, env: DistEnv, cfg: RunConfig, desc=None
):
    """Each rank scores every world_size-th user; sums are added over ranks."""
    rows = np.arange(env.rank, len(evalset), env.world_size)
    partial = evaluate_partial(
        scorer,
        split,
        evalset,
        negatives,
        rows=rows,
        batch_size=cfg.train.eval_batch_size,
        seed=cfg.train.seed + env.rank,
        desc=desc if env.is_main and cfg.train.progress else None,
    )
    return finalize(all_reduce_arrays(env, partial), split.data.n_items, negatives.shape[1])


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def _past_deadline(phase: Phase) -> bool:
    return bool(phase.deadline) and time.perf_counter() >= phase.deadline


def _out_of_time(phase: Phase, train_seconds: float) -> bool:
    over_budget = bool(phase.max_seconds) and train_seconds >= phase.max_seconds
    return over_budget or _past_deadline(phase)


@dataclass
class _Run:
    """Everything one `fit` carries from step to step."""

    phase: Phase
    split: Split
    cfg: RunConfig
    env: DistEnv
    optimizer: ModelOptimizer
    net: torch.nn.Module
    sampler: NegativeSampler | None
    average: WeightAverage | None
    seed: int
    context_len: int
    result: FitResult = field(default_factory=FitResult)
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    bad_epochs: int = 0
    sequences: int = 0
    session_seconds: float = 0.0
    win_users: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    win_ends: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    shuffle_ties: bool = False  # training/ties.py: decided once per run, read every step

    def selected(self):
        """What is evaluated and kept: the averaged weights when averaging, else the live."""
        return self.average.applied() if self.average else contextlib.nullcontext()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def _start(phase: Phase, split: Split, cfg: RunConfig, env: DistEnv) -> _Run:
    t, model = cfg.train, phase.model
    module = phase.train_module or model
    module.to(env.device)
    sampled = t.loss == "sampled"
    # NCCL has no sparse all-reduce: under DDP on GPUs the item table stays dense.
    sparse = sampled and not (env.enabled and env.device.type == "cuda")
    # Fused: one kernel over all parameters instead of a dozen passes per step; on a CPU
    # the Games teacher's step (7.7 M parameters, most in the item table) goes 27 -> 6 ms.
    fused = env.device.type in ("cpu", "cuda")
    decay, ema = phase.regularisers(t)
    optimizer = ModelOptimizer(model, phase.lr, decay, sparse, fused)
    sampler = NegativeSampler(split.item_counts(), env.device) if sampled else None
    run = _Run(
        phase=phase,
        split=split,
        cfg=cfg,
        env=env,
        optimizer=optimizer,
        # No buffer sync before each forward: the only buffers are the catalog's content
        # features (and which items content alone places) and the teachers' successor
        # tables (count_targets), built the same on every rank and never changed; at 671k
        # items they are 170-280 MB and 119 MiB that DDP would send every step.
        net=DDP(module, forward_sync_buffers=False) if env.enabled else module,
        sampler=sampler,
        average=WeightAverage(model, ema) if ema > 0 else None,
        seed=t.seed if phase.seed is None else phase.seed,
        context_len=phase.context_len or model.cfg.max_len,
        shuffle_ties=tie_mode(split.data, cfg.data.tie_order) == "shuffle",
    )
    run.best_state = _clone_state(model)
    trainable = np.flatnonzero(split.train_len >= 2)  # a sequence of 1 has no next item
    run.win_users, run.win_ends = training_windows(split, trainable, run.context_len)
    return run


def _resume(run: _Run, checkpoint_dir: Path | None, identity: dict) -> int:
    """Restore a matching checkpoint; the first epoch still to train."""
    if checkpoint_dir is None:
        return 1
    phase, t = run.phase, run.cfg.train
    restored = checkpoint.load(checkpoint_dir, phase.model, run.optimizer, identity)
    if restored is None:
        return 1
    state, run.best_state, extra = restored
    if run.average is not None:
        run.average.load(extra)
    result = run.result
    result.history = state["history"]
    result.best_epoch, result.best_valid_ndcg = state["best_epoch"], state["best_valid_ndcg"]
    result.best_valid_metrics = state.get("best_valid_metrics", {})  # older checkpoints: none
    result.train_seconds = state["train_seconds"]
    run.bad_epochs = state["bad_epochs"]
    if run.env.is_main:
        log.info("%s: resumed from %s at epoch %d", phase.name, checkpoint_dir, state["epoch"])
    # Stopped for good (patience, its own max_seconds spent) stays stopped; a run stopped by
    # its epoch limit goes on when asked for more epochs, and one ended by the job's
    # deadline (max_total_seconds) goes on under the resumed job's new deadlines: a restarted
    # job gets its budget again, so rerunning only the evaluation needs max_total_seconds=0.
    if run.bad_epochs >= t.patience or _out_of_time(phase, result.train_seconds):
        return phase.epochs + 1
    return state["epoch"] + 1


def _epoch_lr(run: _Run, epoch: int) -> float:
    if run.phase.lr_by_epoch:
        run.set_lr(run.phase.lr_by_epoch[epoch - 1])
    return run.optimizer.param_groups[0]["lr"]


def _step(run: _Run, batch: np.ndarray, rng: np.random.Generator) -> tuple[float, int]:
    """One optimizer step on this rank's slice of `batch`: (loss, sequences)."""
    phase, t, env = run.phase, run.cfg.train, run.env
    model = phase.model
    mine = batch[env.rank :: env.world_size]  # each rank takes its slice of the batch
    inputs, targets = training_pairs(
        run.split,
        run.win_users[mine],
        run.win_ends[mine],
        run.context_len,
        rng if run.shuffle_ties else None,
    )
    kw: dict[str, torch.Tensor] = {}
    if phase.input_noise:  # a teacher's: its soft targets follow the clean inputs
        kw["clean"] = torch.from_numpy(inputs).to(env.device, non_blocking=True)
        inputs = replace_items(inputs, phase.input_noise, model.cfg.n_items, rng)
    x = torch.from_numpy(inputs).to(env.device, non_blocking=True)
    y = torch.from_numpy(targets).to(env.device, non_blocking=True)
    negatives, log_q = None, None
    if run.sampler is not None:
        negatives, log_q = run.sampler.draw(t.num_negatives), run.sampler.log_q
    with autocast(env.device):
        loss = run.net(x, y, negatives, log_q, **kw)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    if run.average is not None:
        run.average.update()
    return float(loss.detach()), len(mine)


def _train_epoch(run: _Run, epoch: int, stop: threading.Event) -> tuple[float, float]:
    """One pass over the training windows: (mean train loss over ranks, seconds)."""
    phase, t, env = run.phase, run.cfg.train, run.env
    began = time.perf_counter()
    rng = np.random.default_rng([run.seed, epoch])  # same batches after a resume
    torch.manual_seed(run.seed * 100_003 + epoch * 101 + env.rank)
    lengths = np.minimum(run.win_ends, run.context_len + 1)
    batches = epoch_batches(
        np.arange(len(run.win_users)), lengths, t.batch_size * env.world_size, rng
    )
    # Every rank needs at least one sequence, or DDP would average an empty loss.
    batches = [b for b in batches if len(b) >= env.world_size]
    run.net.train()
    loss_sum, loss_n = 0.0, 0
    bar = tqdm(
        batches, desc=f"{phase.name} {epoch}", disable=not (env.is_main and t.progress), leave=False
    )
    for batch in bar:
        if any_rank(env, stop.is_set()):
            raise Stopped(f"stopped during epoch {epoch}")
        if phase.deadline and any_rank(env, _past_deadline(phase)):
            break  # the job's budget: this epoch is cut short, evaluated, and the last
        loss, n = _step(run, batch, rng)
        loss_sum += loss * n
        loss_n += n
        bar.set_postfix(loss=f"{loss_sum / max(loss_n, 1):.4f}")
    elapsed = time.perf_counter() - began
    run.sequences += loss_n
    run.session_seconds += elapsed
    run.result.train_seconds += elapsed
    total = all_reduce_arrays(env, {"s": np.array(loss_sum), "n": np.array(float(loss_n))})
    return float(total["s"]) / max(1.0, float(total["n"])), elapsed


def _validate(run: _Run, epoch: int, valid_negatives: np.ndarray) -> dict:
    """Evaluate on valid, keep the weights if they are the best so far, decay the rate on a
    plateau; the figures for the epoch's history row."""
    began = time.perf_counter()
    model, result = run.phase.model, run.result
    with run.selected():
        metrics = evaluate_sharded(
            model_scorer(model, run.env.device),
            run.split,
            run.split.evalset("valid"),
            valid_negatives,
            run.env,
            run.cfg,
        )
        valid, sampled = metrics["full"], metrics[f"sampled{valid_negatives.shape[1]}"]
        improved = valid["ndcg@10"] > result.best_valid_ndcg
        if improved:
            run.best_state = _clone_state(model)
    if improved:
        result.best_valid_ndcg, result.best_epoch, run.bad_epochs = valid["ndcg@10"], epoch, 0
        result.best_valid_metrics = metrics
    else:
        run.bad_epochs += 1
        run.set_lr(run.optimizer.param_groups[0]["lr"] * run.cfg.train.lr_decay)
    return {
        "valid_ndcg@10": valid["ndcg@10"],
        "valid_hr@10": valid["hr@10"],
        "valid_sampled_ndcg@10": sampled["ndcg@10"],
        "eval_seconds": time.perf_counter() - began,
    }


def _wants_validation(run: _Run, epoch: int, out_of_time: bool) -> bool:
    # The last epoch is always evaluated, also when the time budget ends the run, so that
    # what is kept was measured (not the weights training started from).
    phase = run.phase
    return (
        epoch == phase.epochs
        or out_of_time
        or (epoch >= phase.eval_from and epoch % run.cfg.train.eval_every == 0)
    )


def _print_row(run: _Run, row: dict) -> None:
    if run.env.is_main:
        # One line per epoch, parseable by SageMaker metric definitions.
        key = run.phase.key
        print(
            " ".join(
                f"{key(k)}={v:.6g}" if isinstance(v, float) else f"{key(k)}={v}"
                for k, v in row.items()
            ),
            flush=True,
        )


def _checkpoint(run: _Run, epoch: int, checkpoint_dir: Path | None, identity: dict) -> None:
    if checkpoint_dir is None or not run.env.is_main:
        return
    result = run.result
    checkpoint.save(
        checkpoint_dir,
        run.phase.model,
        run.optimizer,
        run.best_state,
        run.average.state() if run.average is not None else {},
        {
            "identity": identity,
            "epoch": epoch,
            "bad_epochs": run.bad_epochs,
            "best_epoch": result.best_epoch,
            "best_valid_ndcg": result.best_valid_ndcg,
            "best_valid_metrics": result.best_valid_metrics,
            "history": result.history,
            "train_seconds": result.train_seconds,
        },
    )


def _stop_reason(run: _Run, epoch: int, out_of_time: bool) -> str | None:
    """Why training ends after this epoch, or None to go on."""
    if out_of_time:
        return "time budget"
    if run.bad_epochs >= run.cfg.train.patience:
        return "patience"
    if epoch == run.phase.epochs:
        return "epochs"
    return None


def fit(
    phase: Phase,
    split: Split,
    cfg: RunConfig,
    env: DistEnv,
    valid_negatives: np.ndarray,
    checkpoint_dir: Path | None,
    stop: threading.Event,
    identity: dict,
) -> FitResult:
    """Train until early stopping, the epoch limit or the time budget; leaves the best weights
    (by valid NDCG@10) loaded in `model`."""
    run = _start(phase, split, cfg, env)
    for epoch in range(_resume(run, checkpoint_dir, identity), phase.epochs + 1):
        lr_now = _epoch_lr(run, epoch)
        train_loss, elapsed = _train_epoch(run, epoch, stop)
        row: dict = {
            "epoch": epoch,
            "train_loss": train_loss,
            "lr": lr_now,
            "epoch_seconds": elapsed,
        }
        # Every rank must take the same branch, or DDP waits forever for the one that stopped.
        out_of_time = any_rank(env, _out_of_time(phase, run.result.train_seconds))
        if not phase.select_best:
            with run.selected():
                run.result.best_epoch, run.best_state = epoch, _clone_state(phase.model)
        elif _wants_validation(run, epoch, out_of_time):
            row.update(_validate(run, epoch, valid_negatives))
            # The evaluation may use up the phase's time: stop now rather than begin an
            # epoch that the deadline would end before its first step (an empty epoch).
            out_of_time = out_of_time or any_rank(env, _past_deadline(phase))
        run.result.history.append(row)
        _print_row(run, row)
        _checkpoint(run, epoch, checkpoint_dir, identity)
        reason = _stop_reason(run, epoch, out_of_time)
        if reason:
            if env.is_main:
                log.info(
                    "%s: stopping after epoch %d (%s); best epoch %d",
                    phase.name,
                    epoch,
                    reason,
                    run.result.best_epoch,
                )
            break
    phase.model.load_state_dict(run.best_state)
    if run.session_seconds > 0:
        run.result.sequences_per_second = run.sequences * env.world_size / run.session_seconds
    return run.result
