"""Soft targets from counting: what usually follows the input item, as a share of the target.

A teacher on a sparse log (Games: ~7 items per user) fits its few next items and then
overfits, while co-occurrence, which only counts what follows what, stays ahead of it. With
`count_targets` = a > 0 the teacher's target at each position is no longer one item but
(1 - a) on the true next item plus a spread over the items that followed the input item in
the training split (the pair counts co-occurrence and the transitions table use), in
proportion to how many users made each pair: label smoothing toward counting's next-item
distribution instead of toward the uniform one. Only training rows are counted, so valid and
test stay unseen; the counts are used in training only and are not part of the model: the
teacher scored and exported is the Transformer alone.
"""

from __future__ import annotations

import numpy as np
import torch

from training.baselines import pair_counts
from training.split import Split

WIDTH = 16  # successors kept per item: the heaviest, by users who made the pair
WINDOW = 3  # steps apart, as co-occurrence and the transitions table count


def successors(
    split: Split, width: int = WIDTH, window: int = WINDOW
) -> tuple[torch.Tensor, torch.Tensor]:
    """(items, weights), each (n_items + 1, width): each item's `width` most counted
    successors in training and their share of those counts (rows sum to 1; an item no pair
    starts from has an empty row: padding ids, weight 0). Equal counts (most pairs in a
    sparse log are made by one user) are broken by the successor's training popularity,
    not by its id's place in the sorted catalog."""
    indptr, cols, counts = pair_counts(split, window)
    n = len(indptr) - 1
    row = np.repeat(np.arange(n), np.diff(indptr))
    popular = split.item_counts()[cols]
    # heaviest first within each row: sort by (row, -count, -popularity), take each row's first
    order = np.lexsort((-popular, -counts, row))
    row, cols, counts = row[order], cols[order], counts[order]
    rank = np.arange(len(row)) - indptr[row]
    keep = rank < width
    items = np.zeros((n, width), dtype=np.int64)
    weights = np.zeros((n, width), dtype=np.float32)
    items[row[keep], rank[keep]] = cols[keep]
    weights[row[keep], rank[keep]] = counts[keep]
    total = weights.sum(1, keepdims=True)
    np.divide(weights, total, out=weights, where=total > 0)
    return torch.from_numpy(items), torch.from_numpy(weights)
