"""Which loss a catalog gets, and the negatives the sampled softmax draws.

A full softmax costs positions x catalog per step: on two CPU cores that is cheap up to a
few ten thousand items and about 30 hours an epoch at 671k items. Above FULL_SOFTMAX_MAX_ITEMS
the teacher and students train with a sampled softmax instead: K negatives per step, shared
by the batch, drawn from a mix of the uniform and the training popularity distribution, and
every logit corrected by log q (the probability the item had of being drawn) so the sampled
loss estimates the full one (Bengio & Senecal 2008; Yi et al., RecSys 2019). Popular items
are the hard negatives a uniform draw almost never picks in a large catalog.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

# Measured on this 2-core machine: a full-softmax teacher step over 24k items (Games) costs
# about 3x the sampled one with 2,048 negatives; beyond ~20k items the full loss stops paying.
FULL_SOFTMAX_MAX_ITEMS = 20_000
# Share of the uniform distribution in the proposal; the rest follows popularity.
UNIFORM_SHARE = 0.5


def choose_loss(requested: str, n_items: int) -> str:
    if requested != "auto":
        return requested
    return "full" if n_items <= FULL_SOFTMAX_MAX_ITEMS else "sampled"


def clamp_negatives(requested: int, n_items: int) -> int:
    """At most n_items - 1 negatives (the target is never its own negative); warns."""
    most = max(1, n_items - 1)
    if requested > most:
        log.warning(
            "num_negatives=%d is more than the catalog's %d other items; using %d",
            requested,
            most,
            most,
        )
        return most
    return requested


class NegativeSampler:
    """Draws K shared negatives per step from q = u/n + (1 - u) * popularity, u = UNIFORM_SHARE,
    by inverse CDF (O(K log n) per draw, no per-step pass over the catalog)."""

    def __init__(self, counts: np.ndarray, device: torch.device, uniform_share: float = 0.5):
        """counts: (n_items + 1,) training occurrences per item, column 0 padding."""
        pop = counts[1:].astype(np.float64)
        n = len(pop)
        q = uniform_share / n + (1.0 - uniform_share) * pop / max(pop.sum(), 1.0)
        q /= q.sum()
        self.cdf = torch.from_numpy(np.cumsum(q)).to(device)
        log_q = np.concatenate([[0.0], np.log(q)])
        self.log_q = torch.from_numpy(log_q.astype(np.float32)).to(device)
        self.n_items = n

    def draw(self, k: int) -> torch.Tensor:
        u = torch.rand(k, dtype=torch.float64, device=self.cdf.device)
        idx = torch.searchsorted(self.cdf, u * self.cdf[-1])
        return idx.clamp_max(self.n_items - 1) + 1  # catalog rows are 1..n_items
