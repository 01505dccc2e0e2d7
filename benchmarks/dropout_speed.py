"""Teacher epochs with torch's dropout against training/dropout.py's mask, side by side.

Two teachers with the same settings and seed train in ONE process, epochs alternated (A, B,
B, A, A, B, ...), so a change in the shared machine's speed hits both alike; one uses
`F.dropout` and the fused attention's own dropout (torch's bernoulli_ mask), the other the
job's code as it is (without count_targets' soft targets, which the job's teachers train
with since 2026-12-08: both sides alike). Prints one JSON line: median epoch seconds of each,
their ratio, every epoch's seconds and mean training loss.

    python benchmarks/dropout_speed.py --data ../shared/data/ml-100k/interactions.csv \
        --epochs 8 --threads 2 --set weight_decay=0.1 --set ema_decay=0.99
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import training.dropout as dropout_mod  # noqa: E402
import training.model as model_mod  # noqa: E402
from training.config import ConfigError, from_hyperparameters, key_values, set_argument  # noqa: E402
from training.data import DataError, load_interactions  # noqa: E402
from training.dist import DistEnv  # noqa: E402
from training.pipeline import build_teacher  # noqa: E402
from training.plan import adapt  # noqa: E402
from training.split import leave_one_out  # noqa: E402
from training.trainer import Phase, _start, _train_epoch  # noqa: E402


def torch_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training) if p else x


def torch_attention(q, k, v, mask, p: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


MASKS = {
    "bernoulli": (torch_dropout, torch_attention),
    "16bit": (dropout_mod.dropout, model_mod.attention),
}


def use(name: str) -> None:
    dropout_mod.dropout, model_mod.attention = MASKS[name]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--set", action="append", default=[], type=set_argument, help="key=value over the defaults"
    )
    a = p.parse_args()
    logging.disable(logging.INFO)
    torch.set_num_threads(a.threads)
    extra = key_values(a.set)
    try:  # one line and exit 2, not a traceback
        cfg = from_hyperparameters({"max_total_seconds": 0, "progress": "false", **extra})
        data = load_interactions(a.data, cfg.data)
    except (ConfigError, DataError) as e:
        p.error(str(e))
    adapt(cfg, data, say=False)
    split = leave_one_out(data)
    runs = {
        name: _start(
            Phase("teacher", build_teacher(cfg, data), cfg.train.lr, a.epochs),
            split,
            cfg,
            DistEnv(),
        )
        for name in MASKS
    }
    stop = threading.Event()
    seconds: dict[str, list[float]] = {name: [] for name in MASKS}
    losses: dict[str, list[float]] = {name: [] for name in MASKS}
    for epoch in range(1, a.epochs + 1):
        order = list(MASKS) if epoch % 2 else list(reversed(MASKS))
        for name in order:
            use(name)
            loss, secs = _train_epoch(runs[name], epoch, stop)
            seconds[name].append(round(secs, 2))
            losses[name].append(round(loss, 4))
    median = {name: statistics.median(v) for name, v in seconds.items()}
    out = {
        "data": a.data,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "set": extra,
        "model": {"d_model": cfg.model.d_model, "loss": cfg.train.loss},
        "median_epoch_seconds": median,
        "16bit/bernoulli": round(median["16bit"] / median["bernoulli"], 3),
        "epoch_seconds": seconds,
        "train_loss": losses,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
