"""Where a trained teacher loses its hits: test metrics by how popular the held-out item is,
and what a popularity prior added to its scores would change. Prints JSON.

Reads a teacher from an output directory (`teacher.safetensors` + `teacher_config.json`) or
a checkpoint (`--weights .../best.safetensors --config .../teacher_config.json`) and the data
it was trained on, split and sampled exactly as the training job does.

    .venv/bin/python benchmarks/diagnose.py --data ../shared/data/games/interactions.csv \
        --preset training/presets/games.json \
        --weights runs/q/games-checkpoints/teacher/best.safetensors \
        --config runs/q/games/teacher_config.json

`--trained-on train+valid` for a refit teacher: popularity then counts the valid items too.
Several `--weights` (teachers of one config trained with different seeds) are scored as an
ensemble, exactly as the training job's `teachers` does (training/ensemble.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from quality import machine  # benchmarks/ is on sys.path when run as a script
from safetensors.torch import load_file

from training.baselines import Popularity
from training.config import ModelConfig, from_hyperparameters, load_hyperparameters
from training.ensemble import as_teacher
from training.evaluate import evaluate
from training.model import SASRec
from training.pipeline import prepare_data
from training.sagemaker import Paths
from training.trainer import model_scorer

# Buckets of training occurrences of the held-out item: never seen, rare, ..., head.
BUCKETS = ((0, 1), (1, 5), (5, 20), (20, 100), (100, None))
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0)


def figures(metrics: dict) -> dict:
    full, sampled = metrics["full"], metrics["sampled100"]
    return {
        "full_ndcg@10": round(full["ndcg@10"], 4),
        "full_hr@10": round(full["hr@10"], 4),
        "sampled100_ndcg@10": round(sampled["ndcg@10"], 4),
        "sampled100_hr@10": round(sampled["hr@10"], 4),
    }


def load(a: argparse.Namespace):
    """The split, negatives and teacher as the training job had them; ValueError if the
    files do not belong together."""
    for path in (a.data, a.items, a.preset, *a.weights, a.config):
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
    cfg = from_hyperparameters(load_hyperparameters(a.preset))
    items = str(a.items) if a.items else None
    paths = Paths(train=str(a.data), items=items, model_dir=None, checkpoints=None, failure=None)
    data, split, negatives = prepare_data(paths, cfg)
    try:
        model_cfg = ModelConfig(**json.loads(a.config.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"{a.config} is not a teacher_config.json: {exc}") from None
    if model_cfg.n_items != data.n_items:
        raise ValueError(
            f"{a.config} is for {model_cfg.n_items} items, {a.data} has {data.n_items}: "
            "a teacher of another data set (or of other --preset data settings)"
        )
    models = []
    for weights in a.weights:
        try:
            state = load_file(weights)
            # A teacher that read the catalog (content_models=all, the default) holds its
            # content table; it needs the same catalog's features, which --items gives.
            reads = "content.weight" in state
            if reads and data.content is None:
                raise ValueError("the teacher reads the item catalog: give --items")
            model = SASRec(model_cfg, data.content if reads else None)
            model.load_state_dict(state)
        except Exception as exc:  # safetensors and torch raise several types for a foreign file
            raise ValueError(f"{weights} does not fit {a.config}: {exc}") from None
        models.append(model)
    return split, negatives, models, cfg.train.seed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--items", type=Path, help="the item catalog, if training had one")
    p.add_argument("--preset", required=True, type=Path, help="the run's hyperparameters JSON")
    p.add_argument("--weights", required=True, type=Path, nargs="+", help="one or more teachers")
    p.add_argument("--config", required=True, type=Path, help="teacher_config.json")
    p.add_argument("--trained-on", choices=("train", "train+valid"), default="train")
    a = p.parse_args()
    try:
        split, negatives, models, seed = load(a)
    except (ValueError, OSError) as exc:  # ConfigError and DataError are ValueErrors
        print(f"diagnose: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    score = model_scorer(as_teacher(models), torch.device("cpu"))
    test, test_neg = split.evalset("test"), negatives["test"]
    trained_on = split.with_valid_in_train() if a.trained_on == "train+valid" else split
    counts = Popularity(trained_on).counts  # training occurrences of each item
    target_counts = counts[test.targets]

    by_bucket = []
    for lo, hi in BUCKETS:
        rows = np.flatnonzero((target_counts >= lo) & (hi is None or target_counts < hi))
        if len(rows) == 0:
            continue
        subset = dataclasses.replace(
            test,
            users=test.users[rows],
            prefix_len=test.prefix_len[rows],
            targets=test.targets[rows],
        )
        m = evaluate(score, split, subset, test_neg[rows], seed=seed)
        label = f"{lo}+" if hi is None else str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
        by_bucket.append(
            {"train_count": label, "share": round(len(rows) / len(test), 4), **figures(m)}
        )

    # Scores plus w * log(1 + training count): does the model under-use popularity?
    log_pop = np.log1p(counts).astype(np.float32)[None, :]
    prior = []
    for w in PRIOR_WEIGHTS:

        def with_prior(histories, w=w):
            return score(histories) + w * log_pop

        m = evaluate(with_prior, split, test, test_neg, seed=seed)
        prior.append({"weight": w, **figures(m)})

    out = {
        "machine": machine(),
        "data": str(a.data),
        "weights": [str(w) for w in a.weights],
        "scored_as": "one teacher" if len(models) == 1 else "mean log-softmax of the teachers",
        "trained_on": a.trained_on,
        "protocol": "test split, leave-one-out by time, k=10; full = whole catalog without "
        "seen items, sampled100 = 100 random unseen items (seeded as in training)",
        "users": len(test),
        "by_target_popularity": by_bucket,
        "popularity_prior": prior,
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
