"""Where a teacher epoch's time goes, old way against new way, side by side in one process.

Measurements on real batches of a data set with its preset (Games by default), each pair
interleaved over several rounds so that drift in machine speed hits both sides alike:

- training step (forward, backward, optimizer, weight average): AdamW `foreach` against
  `fused` (what training/trainer.py uses);
- training step, the sampled loss: three item-table lookups and a concatenated logit matrix
  (the previous SASRec.forward, kept here as `previous_loss`) against one lookup and no
  concatenation (SASRec.forward), both with 4,096 negatives;
- training step, negatives: 4,096 shared negatives (the previous Games preset) against the
  preset's `num_negatives` (2,048);
- validation scoring: the full encoder against `last_only` (the last block for the newest
  position only) plus one matmul into the padded score table (what SASRec.score does);
- rank counting in evaluation: torch's sum of a bool mask against numpy's byte sum.

    .venv/bin/python benchmarks/teacher_step.py [--data ../shared/data/games/interactions.csv]
        [--preset training/presets/games.json] [--rounds 3]

Prints JSON: per-round medians in milliseconds, their median, and new/old ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lmrec.student import left_pad

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.quality import machine  # noqa: E402
from training.averaging import WeightAverage  # noqa: E402
from training.batching import (  # noqa: E402
    epoch_batches,
    replace_items,
    training_pairs,
    training_windows,
)
from training.config import from_hyperparameters, load_hyperparameters  # noqa: E402
from training.data import load_interactions  # noqa: E402
from training.evaluate import _count  # noqa: E402
from training.model import SASRec  # noqa: E402
from training.split import leave_one_out  # noqa: E402


def median_ms(times: list[float]) -> float:
    return round(statistics.median(times) * 1000, 2)


def previous_loss(model: SASRec, items, targets, negatives) -> torch.Tensor:
    """The sampled-softmax loss as SASRec.forward computed it before: separate lookups for
    inputs, targets and negatives, and a cross-entropy over [target, negatives] built by
    concatenation. Same value as SASRec.forward (tests/test_training_step.py)."""
    hidden = model.encode(items)
    real = targets != 0
    h, y = hidden[real], targets[real]
    pos = (h * model.item_emb(y)).sum(-1, keepdim=True)
    neg = h @ model.item_emb(negatives).T
    neg = neg.masked_fill(negatives[None, :] == y[:, None], float("-inf"))
    return F.cross_entropy(torch.cat([pos, neg], dim=1).float(), torch.zeros_like(y))


def step_times(
    cfg, batches, steps: int, fused: bool = True, previous: bool = False, negatives: int = 0
) -> list[float]:
    """Training steps with the given AdamW, loss path and number of negatives (0 = the
    preset's); the batches carry 4,096 uniform negatives, a prefix of which is as uniform."""
    torch.manual_seed(0)
    model = SASRec(cfg.model).train()
    t = cfg.train
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=fused)
    average = WeightAverage(model, t.ema_decay) if t.ema_decay > 0 else None
    loss_of = partial(previous_loss, model) if previous else model
    times = []
    for i, (x, y, neg) in enumerate(batches[: steps + 5]):
        began = time.perf_counter()
        loss = loss_of(x, y, neg[: negatives or t.num_negatives])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average is not None:
            average.update()
        if i >= 5:  # the first steps allocate optimizer state
            times.append(time.perf_counter() - began)
    return times


@torch.no_grad()
def score_times(model: SASRec, histories: list[np.ndarray], last_only: bool) -> list[float]:
    model.eval()
    times = []
    for start in range(0, len(histories), 512):
        x = torch.from_numpy(left_pad(histories[start : start + 512], model.cfg.max_len))
        began = time.perf_counter()
        if last_only:
            model.score(x)
        else:  # the previous path: every position through every block, then a concatenation
            logits = model.catalog_logits(model.encode(x)[:, -1])
            torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits], dim=1)
        times.append(time.perf_counter() - began)
    return times


def count_times(scores: np.ndarray, numpy_side: bool, reps: int = 10) -> list[float]:
    target = scores[:, 1].copy()
    as_torch, target_t = torch.from_numpy(scores), torch.from_numpy(target)
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        if numpy_side:  # what training/evaluate.py runs
            _count(scores > target[:, None])
        else:
            (as_torch > target_t[:, None]).sum(1, dtype=torch.int32)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared/data/games/interactions.csv")
    p.add_argument("--preset", type=Path, default=REPO / "training/presets/games.json")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--users", type=int, default=4096, help="valid users scored per round")
    args = p.parse_args()
    if not args.data.exists():
        raise SystemExit(f"error: no data at {args.data}")

    cfg = from_hyperparameters(load_hyperparameters(args.preset, required=True))
    if cfg.train.loss != "sampled":
        raise SystemExit(f"error: {args.preset} does not train with the sampled loss")
    data = load_interactions(str(args.data), cfg.data)
    split = leave_one_out(data)
    cfg.model.n_items = data.n_items
    width, rng = cfg.model.max_len, np.random.default_rng(0)
    trainable = np.flatnonzero(split.train_len >= 2)
    users, ends = training_windows(split, trainable, width)
    order = epoch_batches(
        np.arange(len(users)), np.minimum(ends, width + 1), cfg.train.batch_size, rng
    )
    batches = []
    for b in order[: args.steps + 5]:
        x, y = training_pairs(split, users[b], ends[b], width, rng)
        x = replace_items(x, cfg.train.input_noise, data.n_items, rng)
        neg = torch.randint(1, data.n_items + 1, (max(4096, cfg.train.num_negatives),))
        batches.append((torch.from_numpy(x), torch.from_numpy(y), neg))
    picked = rng.choice(len(split.valid), size=min(args.users, len(split.valid)), replace=False)
    picked = picked[np.argsort(split.valid.prefix_len[picked], kind="stable")]
    valid = split.valid
    histories = [split.history(valid.users[i], valid.prefix_len[i]) for i in picked]
    torch.manual_seed(0)
    model = SASRec(cfg.model)
    block = np.random.default_rng(1).standard_normal((512, data.n_items + 1)).astype(np.float32)

    steps, preset_k = args.steps, cfg.train.num_negatives
    sides = {
        "train_step": (
            lambda new: step_times(cfg, batches, steps, fused=new, negatives=4096),
            "foreach",
            "fused",
        ),
        "train_step_loss_4096_negatives": (
            lambda new: step_times(cfg, batches, steps, previous=not new, negatives=4096),
            "three_lookups_concat",
            "one_lookup",
        ),
        "train_step_negatives": (
            lambda new: step_times(cfg, batches, steps, negatives=preset_k if new else 4096),
            "4096",
            str(preset_k),
        ),
        "score_512_users": (lambda new: score_times(model, histories, new), "full", "last_only"),
        "rank_count_512_users": (lambda new: count_times(block, new), "torch", "numpy"),
    }
    rounds: dict[str, dict[str, list[float]]] = {k: {"old": [], "new": []} for k in sides}
    for _ in range(args.rounds):
        for name, (measure, _, _) in sides.items():
            for label, new in (("old", False), ("new", True)):
                rounds[name][label].append(median_ms(measure(new)))
    result = {}
    for name, (_, old_name, new_name) in sides.items():
        old, new = statistics.median(rounds[name]["old"]), statistics.median(rounds[name]["new"])
        result[name] = {
            f"old_{old_name}_ms": old,
            f"new_{new_name}_ms": new,
            "new_over_old": round(new / old, 3),
            "rounds_ms": rounds[name],
        }
    print(
        json.dumps(
            {
                "machine": machine(),
                "data": str(args.data.name),
                "model": {"d_model": cfg.model.d_model, "n_blocks": cfg.model.n_blocks},
                "batch_size": cfg.train.batch_size,
                "steps_per_round": args.steps,
                "results": result,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
