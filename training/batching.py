"""Turn variable-length histories into left-padded batches."""

from __future__ import annotations

import numpy as np
from lmrec.student import left_pad

from training.split import Split


def training_pairs(
    split: Split, users: np.ndarray, max_len: int, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets for users' training sequences, (B, L) each. With `rng`,
    interactions that share a timestamp are put in a random order (see Split)."""
    if rng is None:
        seqs = [split.train_sequence(u) for u in users]
    else:
        seqs = [split.shuffled_train_sequence(u, rng) for u in users]
    inputs = left_pad([s[:-1] for s in seqs], max_len)
    targets = left_pad([s[1:] for s in seqs], max_len)
    return inputs, targets


def epoch_batches(
    users: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of users where each batch holds users of similar length.

    Users are shuffled, cut into chunks of 50 batches, sorted by length inside each chunk,
    and the batches shuffled again: padding waste drops while order stays random.
    """
    users = rng.permutation(users)
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(users), chunk):
        part = users[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]
