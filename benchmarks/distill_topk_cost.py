"""What the teacher's own top-K would cost as extra distillation candidates, per student step.

    python benchmarks/distill_topk_cost.py [--threads 1] [--steps 6]

Side by side, on random sequences of 9 positions (128 x 9 = 1,152 positions per step, about
a step of the synthetic M rung): one sampled distillation step (target + 2,048 shared
negatives, sparse student table) against a chunked pass of the teacher over the whole catalog
for every position of that step (top-100, 64 MB of scores at a time). Prints one JSON line
with the medians (the first step of each size is a warm-up and left out).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from serving_scale import machine  # benchmarks/ is on sys.path when run as a script

from training.config import ModelConfig, StudentConfig
from training.distill import Distiller
from training.model import SASRec
from training.optim import ModelOptimizer
from training.sampling import NegativeSampler

SIZES = {"M": 74_994, "L": 671_000}
MACHINE = machine()  # this machine's CPU and memory, read at start (not a fixed string)
TOP_K = 100


@torch.no_grad()
def teacher_top_k(teacher: SASRec, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(positions, TOP_K) catalog rows, best first, by chunks of the item table."""
    h = teacher.encode(x)[real]
    table = teacher.item_emb.weight
    chunk = max(TOP_K, (1 << 24) // len(h))
    best_v = torch.full((len(h), 0), float("-inf"))
    best_i = torch.zeros((len(h), 0), dtype=torch.long)
    for lo in range(1, table.shape[0], chunk):
        v, i = torch.topk(h @ table[lo : lo + chunk].T, min(TOP_K, len(table) - lo), dim=1)
        best_v, j = torch.topk(torch.cat([best_v, v], 1), TOP_K, dim=1)
        best_i = torch.gather(torch.cat([best_i, i + lo], 1), 1, j)
    return best_i


def measure(n_items: int, steps: int, rng: np.random.Generator) -> dict:
    torch.manual_seed(0)
    teacher = SASRec(ModelConfig(n_items=n_items, d_model=64))
    student = SASRec(StudentConfig().model_config(n_items))
    distiller = Distiller(student, teacher, StudentConfig())
    optimizer = ModelOptimizer(student, 1e-3, 0.0, sparse_items=True, fused=True)
    counts = np.concatenate([[0], rng.zipf(1.5, n_items).clip(max=10**6)]).astype(float)
    sampler = NegativeSampler(counts, torch.device("cpu"))
    step_s, top_s = [], []
    for _ in range(steps):
        seq = torch.from_numpy(rng.integers(1, n_items + 1, size=(128, 10)))
        x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
        began = time.perf_counter()
        loss = distiller(x, y, sampler.draw(2048), sampler.log_q)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        middle = time.perf_counter()
        teacher_top_k(teacher, x, y != 0)
        step_s.append(middle - began)
        top_s.append(time.perf_counter() - middle)
    step, top = float(np.median(step_s[1:])), float(np.median(top_s[1:]))
    return {
        "items": n_items,
        "positions_per_step": int((y != 0).sum()),
        "distill_step_ms": round(step * 1000, 1),
        "teacher_top_k_pass_ms": round(top * 1000, 1),
        "step_with_top_k_over_without": round((step + top) / step, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    out: dict = {"machine": MACHINE, "threads": args.threads, "top_k": TOP_K}
    out |= {name: measure(n, args.steps, rng) for name, n in SIZES.items()}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
