"""Only a bundle that answers is served: the checks a candidate passes before a server swaps
it in (lmrec.serving) and before a promotion points production at it (lmrec.promote).

Checksums prove the bytes are the ones training wrote, not that they can serve: a config
whose n_heads does not divide the width, weights that went NaN in training, a position table
shorter than max_len or a popularity count that is negative verify fine and then answer some
requests with a 500 or `score: null`. So, after lmrec.bundle.load (which checks each file's
own structure: lmrec.items, lmrec.ivf, lmrec.transitions):

1. every array a request reads, in the shape, kind and range the runtime indexes it with
   (the weights against the config, the index against the item table, popularity);
2. the requests themselves: a history as long as max_len and one longer, one item, none
   (the popular fallback), similar items, a category filter, and the catalog fields of every
   item returned, each answered with k distinct items and finite scores.
"""

from __future__ import annotations

import numpy as np

from lmrec.bundle import Bundle, BundleError
from lmrec.content import ContentSpec, spec_from_manifest

SMOKE_K = 10
_POSITIVE = ("d_model", "n_heads", "n_blocks", "max_len", "n_items")
# A trained student's weights stay far below this (at most 1.34 in the ML-100K student).
# The bound keeps every activation of the forward pass inside float32 for any history, so
# a finite weight cannot still answer inf for a history the smoke requests did not try.
MAX_ABS_WEIGHT = 1e4
_TABLE_DTYPES = (np.float32, np.float16, np.float64, np.int8)


def check_config(config: object) -> None:
    """Refuse a model config no forward pass can run, naming the cause."""
    if not isinstance(config, dict):
        raise BundleError("model config: must be a JSON object")
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


def expected_shapes(config: dict, hidden: int) -> dict[str, tuple[int, ...]]:
    """Every dense tensor lmrec.student reads, by state_dict name, in (out, in) layout."""
    d, n = config["d_model"], config["n_items"]
    shapes = {
        "item_emb.weight": (n + 1, d),  # row 0 is padding
        "pos_emb.weight": (config["max_len"], d),  # a window of max_len positions
        "ln_f.weight": (d,),
        "ln_f.bias": (d,),
    }
    for i in range(config["n_blocks"]):
        p = f"blocks.{i}."
        shapes |= {
            p + "ln1.weight": (d,),
            p + "ln1.bias": (d,),
            p + "attn.qkv.weight": (3 * d, d),
            p + "attn.qkv.bias": (3 * d,),
            p + "attn.proj.weight": (d, d),
            p + "attn.proj.bias": (d,),
            p + "ln2.weight": (d,),
            p + "ln2.bias": (d,),
            p + "ffn.0.weight": (hidden, d),
            p + "ffn.0.bias": (hidden,),
            p + "ffn.2.weight": (d, hidden),
            p + "ffn.2.bias": (d,),
        }
    return shapes


def _ffn_width(weights: dict[str, np.ndarray], config: dict) -> int:
    """The FFN's hidden width: ffn_mult * d_model when the config says, else as stored."""
    mult = config.get("ffn_mult")
    if isinstance(mult, int) and not isinstance(mult, bool) and mult >= 1:
        return mult * config["d_model"]
    first = weights.get("blocks.0.ffn.0.weight")
    return int(first.shape[0]) if first is not None and first.ndim == 2 else 0


def _check_finite(name: str, array: np.ndarray) -> None:
    """NaN, infinite or out-of-bound values; min and max are one pass each, and no copy."""
    lo, hi = array.min(), array.max()  # NaN propagates through both
    if lo >= -MAX_ABS_WEIGHT and hi <= MAX_ABS_WEIGHT:
        return
    if np.isnan(lo) or np.isnan(hi):
        raise BundleError(f"weights: {name} holds NaN values")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise BundleError(f"weights: {name} holds infinite values")
    raise BundleError(f"weights: {name} holds values beyond +-{MAX_ABS_WEIGHT:g}")


def check_weights(
    weights: dict[str, np.ndarray], config: dict, content: ContentSpec | None = None
) -> None:
    """Every tensor the student reads is there, in the config's shape and a float kind (the
    item table: float or int8 with one float scale per row), finite and bounded; and no
    tensor the config does not account for (weights of another model). With a content
    spec (the manifest's "content"), the content table too: (spec.n_buckets, d_model)."""
    stored = {name.split(".")[1] for name in weights if name.startswith("blocks.")}
    if len(stored) != config["n_blocks"]:  # before a loop over n_blocks, however large
        raise BundleError(
            f"weights: {len(stored)} blocks stored, the config says n_blocks {config['n_blocks']}"
        )
    expected = expected_shapes(config, _ffn_width(weights, config))
    table = weights.get("item_emb.weight")
    if table is not None and table.dtype == np.int8:
        expected["item_emb.scale"] = (config["n_items"] + 1,)
    if content is not None:
        expected["content.weight"] = (content.n_buckets, config["d_model"])
    for name, shape in expected.items():
        array = weights.get(name)
        if array is None:
            raise BundleError(f"weights: {name} is missing")
        if array.shape != shape:
            raise BundleError(f"weights: {name} is {array.shape}, the config needs {shape}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise BundleError(f"weights: {', '.join(extra[:3])} not part of the configured model")
    assert table is not None  # in `expected`
    if table.dtype not in _TABLE_DTYPES:
        raise BundleError(f"weights: item_emb.weight is {table.dtype}, not float or int8")
    for name in expected:
        array = weights[name]
        if name != "item_emb.weight" and not np.issubdtype(array.dtype, np.floating):
            raise BundleError(f"weights: {name} is {array.dtype}, not a float type")
        if np.issubdtype(array.dtype, np.floating):
            _check_finite(name, array)


def check_arrays(candidate: Bundle) -> None:
    """The arrays a request reads beside the weights: popularity (the cold-start scores), the
    recent popularity (trending's prior) and the item index's centroids (scored against a
    user vector of d_model)."""
    named = [("popularity", candidate.popularity)]
    if candidate.recent_popularity is not None:  # trending's prior
        named.append(("recent popularity", candidate.recent_popularity))
    for name, counts in named:
        if not np.isfinite(counts).all():
            raise BundleError(f"{name} holds NaN or infinite counts")
        if (counts < 0).any():
            raise BundleError(f"{name} holds negative counts")
    index = candidate.index
    if index is not None and index.centroids.shape[1] != candidate.config["d_model"]:
        raise BundleError(
            f"item index: centroids of width {index.centroids.shape[1]}, the model's is "
            f"{candidate.config['d_model']}"
        )


def _check_answer(items, rec, expected: int | None, what: str) -> None:
    """k distinct catalog rows with finite scores, whose catalog fields decode."""
    rows = np.asarray([r.row for r in items], dtype=np.int64)
    scores = np.asarray([r.score for r in items], dtype=np.float64)
    if expected is not None and len(rows) != expected:
        raise BundleError(f"smoke request ({what}): {len(rows)} items, expected {expected}")
    if not np.isfinite(scores).all():
        raise BundleError(f"smoke request ({what}): scores are not finite")
    if len(np.unique(rows)) != len(rows):
        raise BundleError(f"smoke request ({what}): an item is recommended twice")
    for r in items:  # what the API returns beside each item (lmrec.api.routes)
        rec.catalog.fields(r.row)
        if r.reason_row is not None:
            rec.catalog.fields(r.reason_row)


def _ask(rec) -> None:
    """The requests every API route makes, on histories at the window's edges."""
    from lmrec.recommend import Filters

    n, max_len = rec.model.n_items, rec.model.max_len
    rows = np.arange(1, n + 1, dtype=np.int64)
    longer = np.resize(rows, max_len + 1)  # the whole position table, and one item cut off
    plain = Filters(k=SMOKE_K, exclude_seen=False, explain=True)
    k = min(SMOKE_K, n)
    for history, what in (
        (longer[:max_len], f"a history of max_len = {max_len}"),
        (longer, f"a history of max_len + 1 = {max_len + 1}"),
        (rows[-1:], "a history of one item"),
        (np.empty(0, np.int64), "without a history"),
    ):
        _check_answer(rec.recommend(history, plain).items, rec, k, what)
    ids = rec.catalog.item_ids
    for item in {ids[0], ids[n - 1]}:
        found = rec.similar(item, SMOKE_K)
        if found is None:
            raise BundleError(f"smoke request (similar): item {item[:40]!r} not found")
        _check_answer(found, rec, min(SMOKE_K, n - 1), "similar items")
    categories = rec.catalog.categories
    filtered = Filters(
        k=SMOKE_K,
        exclude_items=[ids[0]],
        include_categories=categories[:1],
        exclude_categories=categories[1:2],
    )
    _check_answer(rec.recommend(longer, filtered).items, rec, None, "with filters")


def check_serves(candidate: Bundle):
    """Build what the API builds and answer the smoke requests; returns the Recommender, or
    raises BundleError naming what is wrong."""
    from lmrec.recommend import Recommender

    check_config(candidate.config)
    try:
        spec = spec_from_manifest(candidate.manifest)
    except ValueError as exc:
        raise BundleError(f"manifest: {exc}") from None
    check_weights(candidate.weights, candidate.config, spec)
    check_arrays(candidate)
    try:
        rec = Recommender(candidate)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise BundleError(f"the model cannot be built: {type(exc).__name__}: {exc}") from None
    try:
        with np.errstate(all="ignore"):  # a non-finite score is reported, not warned
            _ask(rec)
    except BundleError:
        raise
    except Exception as exc:  # any failure here is the bundle's, and it must not be served
        raise BundleError(f"smoke request failed: {type(exc).__name__}: {exc}") from None
    return rec
