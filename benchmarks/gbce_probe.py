"""gBCE against the softmax and SASRec's BCE, in the teacher's architecture (issue 26).

gSASRec's loss (Petrov & Macdonald, RecSys 2023) was tried as a job option and dropped
(docs/experiments.md); this probe keeps the measurement reproducible without the option.
Its teacher has no count_targets soft targets (the job's default since 2026-12-08).
One variant per process, plain Adam, d_model 64, batch 32, uniform negatives, valid NDCG@10
(full ranking, seen items excluded) after each epoch:

    python benchmarks/gbce_probe.py --data ../shared/data/ml-100k/interactions.csv \
        --variant gbce --negatives 256

Variants: ce (the full softmax, the job's loss for small catalogs), gbce (K negatives shared
by the batch, -beta log s(pos) - sum log(1 - s(neg))), bce_perpos / gbce_perpos (K fresh
negatives per position; K = 1 with bce is SASRec's original loss).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from teacher_study import per_user_ndcg  # noqa: E402

from training.batching import training_pairs, training_windows  # noqa: E402
from training.config import from_hyperparameters  # noqa: E402
from training.data import load_interactions  # noqa: E402
from training.model import SASRec, candidate_logits  # noqa: E402
from training.pipeline import build_teacher  # noqa: E402
from training.plan import adapt  # noqa: E402
from training.split import Split, leave_one_out  # noqa: E402
from training.trainer import model_scorer  # noqa: E402


def beta_for(k: int, n_items: int, t: float = 0.75) -> float:
    alpha = k / (n_items - 1)
    return alpha * (t * (1 - 1 / alpha) + 1 / alpha)


def loss_of(m: SASRec, variant: str, k: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if variant == "ce":
        return m(x, y)
    n = m.cfg.n_items
    real = y != 0
    t = y[real]
    if variant.endswith("perpos"):
        negs = torch.randint(1, n + 1, (len(t), k))
        h, table = m.encode(x)[real], m.item_emb.weight
        pos = (h * table[t]).sum(-1)
        neg = torch.einsum("nd,nkd->nk", h, table[negs])
        neg = neg.masked_fill(negs == t[:, None], float("-inf"))
    else:
        shared = torch.randint(1, n + 1, (k,))
        h, pos_vec, neg_vec, _ = m.sampled_vectors(x, real, t, shared)
        logits = candidate_logits(h, pos_vec, neg_vec, t, shared, None)
        pos, neg = logits[:, 0], logits[:, 1:]
    beta = 1.0 if variant.startswith("bce") else beta_for(k, n)
    return (-beta * F.logsigmoid(pos) - F.logsigmoid(-neg).sum(1)).mean()


def run(split: Split, m: SASRec, variant: str, k: int, epochs: int) -> None:
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    users, ends = training_windows(split, np.flatnonzero(split.train_len >= 2), m.cfg.max_len)
    rng = np.random.default_rng(0)
    for epoch in range(1, epochs + 1):
        m.train()
        order = rng.permutation(len(users))
        for s in range(0, len(order), 32):
            idx = order[s : s + 32]
            x, y = training_pairs(split, users[idx], ends[idx], m.cfg.max_len, rng)
            loss = loss_of(m, variant, k, torch.from_numpy(x), torch.from_numpy(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
        m.eval()
        valid = per_user_ndcg(model_scorer(m, torch.device("cpu")), split, "valid").mean()
        print(f"{variant} K={k} epoch={epoch} valid_ndcg@10={valid:.4f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--variant", choices=("ce", "gbce", "bce_perpos", "gbce_perpos"))
    p.add_argument("--negatives", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = from_hyperparameters({"max_total_seconds": 0, "d_model": 64, "batch_size": 32})
    data = load_interactions(a.data, cfg.data)
    split = leave_one_out(data)
    adapt(cfg, data, say=False)
    run(split, build_teacher(cfg, data), a.variant, a.negatives, a.epochs)


if __name__ == "__main__":
    main()
