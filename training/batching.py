"""Turn variable-length histories into left-padded batches.

The unit of training is a window: up to `width` consecutive items of one user's training
sequence, each predicting the item after it. A history longer than the model's window is cut
into several windows (newest first), so every training interaction is a target once per
epoch; SASRec's own code keeps only the newest `width` of each history, which on MovieLens
100K with a 200-item window leaves 14% of the training targets unused.
"""

from __future__ import annotations

import numpy as np
from lmrec.student import left_pad

from training.split import Split


def training_windows(
    split: Split, users: np.ndarray, width: int, all_windows: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(users, ends): window i is the user's training items [ends[i] - width - 1, ends[i]).

    A user with n training items gets windows ending at n, n - width, n - 2*width, ... (only
    the first with `all_windows=False`); together they hold each of the n - 1 targets once.
    """
    n = split.train_len[users].astype(np.int64)
    counts = np.maximum(1, -(-(n - 1) // width)) if all_windows else np.ones_like(n)
    first = np.cumsum(counts) - counts
    k = np.arange(int(counts.sum())) - np.repeat(first, counts)  # window number, newest = 0
    return np.repeat(users, counts), np.repeat(n, counts) - k * width


def training_pairs(
    split: Split,
    users: np.ndarray,
    ends: np.ndarray,
    width: int,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets of the given windows, (B, L) each, L <= width. With
    `rng`, interactions that share a timestamp are put in a random order (see Split)."""
    seqs = [split.train_window(u, e, width, rng) for u, e in zip(users, ends, strict=True)]
    inputs = left_pad([s[:-1] for s in seqs], width)
    targets = left_pad([s[1:] for s in seqs], width)
    return inputs, targets


def epoch_batches(
    units: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of units (windows) where each batch holds units of similar length.

    Units are shuffled, cut into chunks of 50 batches, sorted by length inside each chunk,
    and the batches shuffled again: padding waste drops while order stays random.
    """
    units = rng.permutation(units)
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(units), chunk):
        part = units[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def replace_items(
    inputs: np.ndarray, share: float, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """Inputs with each real item replaced by a uniformly drawn catalog item with probability
    `share`; targets are untouched. Stochastic shared embeddings (Wu et al., NeurIPS 2019),
    as SSE-PT applies it to SASRec's input items: the model cannot lean on any single item
    of a history, which regularises the item table where data is sparse."""
    noisy = (inputs != 0) & (rng.random(inputs.shape) < share)
    out = inputs.copy()
    out[noisy] = rng.integers(1, n_items + 1, size=int(noisy.sum()))
    return out
