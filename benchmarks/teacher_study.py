"""Teacher settings side by side: which learn more per second and reach further.

Every variant is a teacher trained by the job's own loop (training/trainer.py), in ONE
process, epoch by epoch in turn (A, B, C, A, B, C, ...), so that a change in the shared
machine's speed hits every variant alike. Each trains until its own training CPU seconds reach
--seconds, its patience ends or it has trained the epochs it sets (`epochs=`); its best epoch
on valid is then scored on test (full ranking, seen items excluded, NDCG@10 with its 95%
interval) beside co-occurrence on the same users, with the paired difference and its
interval (and the paired difference from the first variant, the reference, on the same
users).

    python benchmarks/teacher_study.py --data ../shared/data/ml-100k/interactions.csv \
        --seconds 80 --variant base: --variant lr3:lr=3e-3 --variant len200:max_len=200

A variant is NAME:key=value,key=value over the job's defaults (plan.adapt fills the rest from
the data's size, as the job does; --base key=value applies to every variant). Prints one
JSON line per variant when all are done.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.baselines import CoOccurrence  # noqa: E402
from training.config import COMMA_PAIRS, ConfigError, from_hyperparameters, key_values  # noqa: E402
from training.count_targets import successors  # noqa: E402
from training.data import DataError, load_interactions  # noqa: E402
from training.dist import DistEnv  # noqa: E402
from training.evaluate import Z95, hide_seen, sample_negatives  # noqa: E402
from training.item_init import ItemInit  # noqa: E402
from training.pipeline import build_teacher  # noqa: E402
from training.plan import adapt  # noqa: E402
from training.split import Split, leave_one_out  # noqa: E402
from training.trainer import (  # noqa: E402
    Phase,
    _start,
    _train_epoch,
    _validate,
    model_scorer,
)


def parse_pairs(text: str) -> dict[str, str]:
    """ "key=value,key=value" (argparse `type=`): a bad pair is refused in one line, exit 2."""
    return key_values([kv for kv in text.split(",") if kv], hint=COMMA_PAIRS)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, pairs = text.partition(":")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:key=value,...")
    return name, parse_pairs(pairs)


def per_user_ndcg(scorer, split: Split, name: str = "test", batch: int = 256) -> np.ndarray:
    """NDCG@10 of each evaluated user, full ranking, seen items excluded (ties count
    against the target: a strict protocol, the same for every model)."""
    ev = split.evalset(name)
    out = np.zeros(len(ev))
    for start in range(0, len(ev), batch):
        idx = np.arange(start, min(start + batch, len(ev)))
        hist = [split.history(u, p) for u, p in zip(ev.users[idx], ev.prefix_len[idx], strict=True)]
        scores = np.array(scorer(hist), dtype=np.float32, copy=True)
        hide_seen(scores, hist)
        target = scores[np.arange(len(idx)), ev.targets[idx]]
        rank = (scores >= target[:, None]).sum(1) - 1
        out[idx] = np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)
    return out


def interval(values: np.ndarray) -> list[float]:
    mean, half = values.mean(), Z95 * values.std(ddof=1) / len(values) ** 0.5
    return [round(float(mean), 4), round(float(mean - half), 4), round(float(mean + half), 4)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument(
        "--seconds",
        type=float,
        required=True,
        help="training CPU seconds per variant (process time: a busy shared machine slows "
        "the wall clock, much less the CPU time a variant gets)",
    )
    p.add_argument(
        "--variant", action="append", required=True, type=parse_variant, help="NAME:key=value,..."
    )
    p.add_argument("--base", default={}, type=parse_pairs, help="key=value,... for every variant")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-users", type=int, default=0, help="valid users while training")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    env, stop = DistEnv(), threading.Event()
    try:  # every variant's settings are checked before the data is read: one line, not a traceback
        first = from_hyperparameters(a.base)
        base = {"max_total_seconds": 0, "epochs": 1000, **a.base}
        configs = [(n, base | pairs, from_hyperparameters(base | pairs)) for n, pairs in a.variant]
        moved = [name for name, _, cfg in configs if cfg.data != first.data]
        if moved:  # the data is loaded once, with --base's data settings
            p.error(f"variant {moved[0]!r} changes a data setting: give it with --base")
        data = load_interactions(a.data, first.data)
    except (ConfigError, DataError) as exc:
        p.error(str(exc))
    split = leave_one_out(data)
    split.sample_eval_users(a.eval_users, seed=first.train.seed + 3)
    valid_neg = sample_negatives(split, split.evalset("valid"), 100, seed=first.train.seed + 1)
    runs: list[dict] = []
    inits: dict[int, ItemInit] = {}
    for name, hp, cfg in configs:
        adapt(cfg, data, say=False)
        model = build_teacher(cfg, data)
        if cfg.train.item_init == "cooccurrence":  # as the job starts its teachers
            width = cfg.model.d_model
            inits[width] = inits.get(width) or ItemInit(split, width)
            inits[width].apply(model.item_emb)
        if cfg.train.count_targets > 0:  # as the job's teachers (pipeline.member)
            model.set_soft_targets(*successors(split), cfg.train.count_targets)
        phase = Phase("teacher", model, cfg.train.lr, cfg.train.epochs)
        runs.append({"name": name, "hp": hp, "run": _start(phase, split, cfg, env), "rows": []})
    active, epoch = list(runs), 0
    while active:
        epoch += 1
        order = active[epoch % len(active) :] + active[: epoch % len(active)]
        for r in order:
            run = r["run"]
            cpu = time.process_time()
            loss, secs = _train_epoch(run, epoch, stop)
            r["cpu"] = r.get("cpu", 0.0) + time.process_time() - cpu
            row = {"epoch": epoch, "loss": round(loss, 4), "seconds": round(secs, 2)}
            row["valid"] = round(_validate(run, epoch, valid_neg)["valid_ndcg@10"], 4)
            row["at"] = round(r["cpu"], 1)
            r["rows"].append(row)
            print(r["name"], json.dumps(row), file=sys.stderr, flush=True)
            spent = r["cpu"] >= a.seconds or epoch >= run.phase.epochs  # a variant's epochs=
            if spent or run.bad_epochs >= run.cfg.train.patience:
                active.remove(r)
    # Test on ALL users (the sample above only kept validation affordable while training).
    split.eval_rows = None
    cooc = per_user_ndcg(CoOccurrence(split), split)
    first: np.ndarray | None = None  # the first variant's per-user NDCG: the paired reference
    for r in runs:
        run = r["run"]
        run.phase.model.load_state_dict(run.best_state)
        t0 = time.perf_counter()
        ndcg = per_user_ndcg(model_scorer(run.phase.model, env.device), split)
        best = run.result.best_epoch
        first = ndcg if first is None else first
        out = {
            "variant": r["name"],
            "set": r["hp"],
            "test_ndcg@10": interval(ndcg),
            "cooccurrence": interval(cooc),
            "paired_diff": interval(ndcg - cooc),
            "minus_first_variant": interval(ndcg - first),
            "best_epoch": run.result.best_epoch,
            "best_valid": round(run.result.best_valid_ndcg, 4),
            "epochs": len(r["rows"]),
            "train_seconds": round(run.result.train_seconds, 1),
            "train_cpu_seconds": round(r["cpu"], 1),
            "median_epoch_seconds": round(statistics.median(x["seconds"] for x in r["rows"]), 2),
            "best_at_seconds": next(x["at"] for x in r["rows"] if x["epoch"] == best),
            "test_seconds": round(time.perf_counter() - t0, 1),
            "users": len(ndcg),
            "valid_curve": [[x["at"], x["valid"]] for x in r["rows"]],
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
