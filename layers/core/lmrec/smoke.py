"""Only a bundle that answers is served: the checks a candidate passes before a server swaps
it in (lmrec.serving) and before a promotion points production at it (lmrec.promote).

Checksums prove the bytes are the ones training wrote, not that they can serve: a config
whose n_heads does not divide the width, or weights that went NaN in training, verify fine
and then answer every request with a 500 or `score: null`.
"""

from __future__ import annotations

import numpy as np

from lmrec.bundle import Bundle, BundleError

SMOKE_K = 10
_POSITIVE = ("d_model", "n_heads", "n_blocks", "max_len", "n_items")


def check_config(config: dict) -> None:
    """Refuse a model config no forward pass can run, naming the cause."""
    values = {}
    for key in _POSITIVE:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BundleError(f"model config: {key} must be a positive integer, not {value!r}")
        values[key] = value
    if values["d_model"] % values["n_heads"]:
        raise BundleError(
            f"model config: n_heads {values['n_heads']} does not divide d_model {values['d_model']}"
        )


def check_weights(weights: dict[str, np.ndarray]) -> None:
    """Refuse NaN or infinite weights (one vectorised pass per tensor, no copies kept)."""
    for name, array in weights.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = "NaN" if np.isnan(array).any() else "infinite"
            raise BundleError(f"weights: {name} holds {bad} values")


def _check_answer(result, expected: int, what: str) -> None:
    scores = np.asarray([r.score for r in result.items], dtype=np.float64)
    if len(scores) != expected:
        raise BundleError(f"smoke request ({what}): {len(scores)} items, expected {expected}")
    if not np.isfinite(scores).all():
        raise BundleError(f"smoke request ({what}): scores are not finite")


def check_serves(candidate: Bundle):
    """Build what the API builds and answer a personalised and a cold request; returns the
    Recommender, or raises BundleError naming what is wrong."""
    from lmrec.recommend import Filters, Recommender

    check_config(candidate.config)
    check_weights(candidate.weights)
    try:
        rec = Recommender(candidate)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BundleError(f"the model cannot be built: {type(exc).__name__}: {exc}") from None
    n_items = len(candidate.item_ids)
    history = np.arange(1, min(3, n_items) + 1, dtype=np.int64)
    expected = min(SMOKE_K, n_items)
    filters = Filters(k=SMOKE_K, exclude_seen=False, explain=True)
    try:
        with np.errstate(all="ignore"):  # a non-finite score is reported below, not warned
            warm = rec.recommend(history, filters)
            cold = rec.recommend(np.empty(0, np.int64), filters)
    except Exception as exc:  # any failure here is the bundle's, and it must not be served
        raise BundleError(f"smoke request failed: {type(exc).__name__}: {exc}") from None
    _check_answer(warm, expected, "with a history")
    _check_answer(cold, expected, "without a history")
    return rec
