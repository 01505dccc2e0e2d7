"""The distillation KL's cost: training/distill.py's hand-written backward against autograd.

    python benchmarks/distill_kl_cost.py [--threads 1] [--steps 21]

training/distill.py computes KL(teacher || student) with its own autograd Function (one
log-softmax forward, backward (softmax - p) / N). The form it replaced, which autograd
differentiates, is cross_entropy with the teacher's probabilities as targets minus the
teacher's entropy, with -inf clamped to a finite value where the sampled loss masks a column.
Side by side, interleaved, on the shapes of real distillation steps: the KL alone (forward
and backward) and one whole distillation step (student and teacher forward, backward,
optimizer) with each KL, for the sampled loss (128 sequences of 10, target + 2,048 shared
negatives over Games' 23,715 items) and the full softmax (128 x 13 over MovieLens 100K's
1,682 items). Prints one JSON line of medians (the first step is a warm-up and left out).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from serving_scale import machine  # benchmarks/ is on sys.path when run as a script

from training import distill
from training.config import ModelConfig, StudentConfig
from training.model import SASRec
from training.optim import ModelOptimizer
from training.sampling import NegativeSampler

MACHINE = machine()  # this machine's CPU and memory, read at start (not a fixed string)
CASES = {"sampled": (23_715, 10, 2048), "full": (1_682, 13, 0)}  # items, length, negatives


def autograd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float):
    """The replaced form: autograd through cross-entropy on soft targets, minus entropy."""
    s = (student_logits / T).clamp_min(-1e9)
    t = (teacher_logits / T).clamp_min(-1e9)
    with torch.no_grad():
        log_p = F.log_softmax(t, dim=1)
        p = log_p.exp()
        entropy = -(p * log_p).sum(1).mean()
    return F.cross_entropy(s, p) - entropy


def kl_alone(kl: Callable, s0: torch.Tensor, t0: torch.Tensor) -> float:
    s = s0.clone().requires_grad_(True)
    began = time.perf_counter()
    kl(s, t0, 1.0).backward()
    return time.perf_counter() - began


def measure(n_items: int, length: int, k: int, steps: int) -> dict:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    teacher = SASRec(ModelConfig(n_items=n_items, d_model=64))
    student = SASRec(StudentConfig().model_config(n_items))
    distiller = distill.Distiller(student, teacher, StudentConfig())
    optimizer = ModelOptimizer(student, 1e-3, 0.0, sparse_items=k > 0, fused=True)
    counts = np.concatenate([[0], rng.zipf(1.5, n_items).clip(max=10**6)]).astype(float)
    sampler = NegativeSampler(counts, torch.device("cpu"))
    seq = torch.from_numpy(rng.integers(1, n_items + 1, size=(128, length + 1)))
    x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    negatives = sampler.draw(k) if k else None
    log_q = sampler.log_q if k else None
    with torch.no_grad():  # the KL's own inputs, with an accidental hit masked as in training
        real = y != 0
        if negatives is not None:
            t0 = teacher.candidates_at(x, real, y[real], negatives, log_q)
        else:
            t0 = teacher.logits_at(x, real)
        s0 = t0 + torch.randn_like(t0)

    def step(kl: Callable) -> float:
        with mock.patch.object(distill, "_kl", kl):
            began = time.perf_counter()
            loss = distiller(x, y, negatives, log_q)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return time.perf_counter() - began

    times: dict[str, list[float]] = {n: [] for n in ("kl_new", "kl_old", "step_new", "step_old")}
    for _ in range(steps):
        times["kl_new"].append(kl_alone(distill._kl, s0, t0))
        times["kl_old"].append(kl_alone(autograd_kl, s0, t0))
        times["step_new"].append(step(distill._kl))
        times["step_old"].append(step(autograd_kl))
    ms = {n: round(float(np.median(v[1:])) * 1000, 1) for n, v in times.items()}
    return {
        "items": n_items,
        "positions_x_columns": list(t0.shape),
        **{f"{n}_ms": v for n, v in ms.items()},
        "kl_new_over_old": round(ms["kl_new"] / ms["kl_old"], 3),
        "step_new_over_old": round(ms["step_new"] / ms["step_old"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"machine": MACHINE, "threads": args.threads}
    out |= {name: measure(*case, args.steps) for name, case in CASES.items()}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
