"""The training job, as named steps: prepare data, build the teacher, train, evaluate, export."""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import threading
import time

import torch
from safetensors.torch import save_file

from training.baselines import CoOccurrence, Popularity
from training.config import RunConfig
from training.data import Interactions, load_interactions
from training.dist import DistEnv, barrier
from training.evaluate import evaluate, sample_negatives
from training.model import SASRec
from training.report import results_table, write_report
from training.sagemaker import Paths, clear_dir
from training.split import Split, leave_one_out
from training.teacher import FitResult, evaluate_sharded, fit, model_scorer

log = logging.getLogger(__name__)


def prepare_data(paths: Paths, cfg: RunConfig) -> tuple[Interactions, Split, dict]:
    data = load_interactions(paths.train, cfg.data, paths.items)
    split = leave_one_out(data)
    n_neg, seed = cfg.train.sampled_negatives, cfg.train.seed
    negatives = {
        "valid": sample_negatives(split, split.valid, n_neg, seed=seed + 1),
        "test": sample_negatives(split, split.test, n_neg, seed=seed + 2),
    }
    return data, split, negatives


def build_teacher(cfg: RunConfig, data: Interactions) -> SASRec:
    cfg.model.n_items = data.n_items
    torch.manual_seed(cfg.train.seed)
    return SASRec(cfg.model)


def evaluate_models(
    model: SASRec, split: Split, negatives: dict, cfg: RunConfig, env: DistEnv
) -> dict:
    """metrics[model][split][protocol][metric]; baselines in the very same protocol."""
    metrics: dict = {"teacher": {}}
    scorer = model_scorer(model, env.device)
    for name in ("valid", "test"):
        metrics["teacher"][name] = evaluate_sharded(
            scorer, split, getattr(split, name), negatives[name], env, cfg, desc=f"teacher {name}"
        )
    if env.is_main:  # baselines are cheap; one process is enough
        for baseline in (Popularity(split), CoOccurrence(split)):
            metrics[baseline.name] = {
                name: evaluate(
                    baseline,
                    split,
                    getattr(split, name),
                    negatives[name],
                    batch_size=cfg.train.eval_batch_size,
                    seed=cfg.train.seed,
                )
                for name in ("valid", "test")
            }
    return metrics


def export(
    paths: Paths,
    cfg: RunConfig,
    env: DistEnv,
    data: Interactions,
    split: Split,
    model: SASRec,
    fit_result: FitResult,
    metrics: dict,
    wall_seconds: float,
) -> dict:
    out = paths.model_dir
    clear_dir(out)
    save_file(
        {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()},
        out / "teacher.safetensors",
    )
    (out / "teacher_config.json").write_text(json.dumps(dataclasses.asdict(cfg.model), indent=1))
    # Row i + 1 of the item embedding is item_ids[i]; row 0 is padding.
    (out / "item_vocabulary.json").write_text(json.dumps({"item_ids": data.item_ids.tolist()}))
    (out / "history.json").write_text(json.dumps(fit_result.history, indent=1))
    summary = {
        "data_fingerprint": data.fingerprint,
        "data": data.stats,
        "evaluated_users": len(split.test),
        "best_epoch": fit_result.best_epoch,
        "train_seconds": fit_result.train_seconds,
        "sequences_per_second": fit_result.sequences_per_second,
        "wall_seconds": wall_seconds,
        "device": str(env.device)
        if env.device.type == "cpu"
        else torch.cuda.get_device_name(env.device),
        "world_size": env.world_size,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "teacher_macs_per_request": model.macs_per_request(model.cfg.max_len),
    }
    document = {
        "metrics": metrics,
        "protocol": {
            "split": "leave-one-out by time: last interaction = test, the one before = valid; "
            "users with < 3 interactions train only",
            "full": "held-out item ranked against every catalog item, user's seen items excluded",
            "sampled100": f"held-out item ranked against {cfg.train.sampled_negatives} uniformly "
            "sampled items the user never interacted with (Kang & McAuley 2018)",
            "k": 10,
            "ties": "broken uniformly at random (seeded)",
        },
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
    write_report(out, metrics, fit_result.history, summary)
    return document


def run(paths: Paths, cfg: RunConfig, env: DistEnv, stop: threading.Event) -> dict | None:
    began = time.perf_counter()
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    data, split, negatives = prepare_data(paths, cfg)
    if env.is_main:
        log.info(
            "split: %d users evaluated, %d train interactions",
            len(split.test),
            int(split.train_len.sum()),
        )
    model = build_teacher(cfg, data)
    # What a checkpoint must match to be resumed: same data, model and optimisation.
    t = cfg.train
    identity = {
        "data_fingerprint": data.fingerprint,
        "model": dataclasses.asdict(cfg.model),
        "seed": t.seed,
        "loss": t.loss,
        "lr": t.lr,
        "batch_size": t.batch_size,
        "world_size": env.world_size,
    }
    fit_result = fit(model, split, cfg, env, negatives["valid"], paths.checkpoints, stop, identity)
    metrics = evaluate_models(model, split, negatives, cfg, env)
    document = None
    if env.is_main:
        document = export(
            paths, cfg, env, data, split, model, fit_result, metrics, time.perf_counter() - began
        )
        print(results_table(metrics), flush=True)
    barrier(env)
    return document
