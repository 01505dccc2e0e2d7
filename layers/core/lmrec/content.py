"""Item content as hashed sparse features: one featuriser for training and serving.

An item's row of the catalog (its columns as strings) becomes a bag of tokens, each hashed
into one of `n_buckets` rows of a content table; the item's content vector is the weighted
sum of those rows. Training (torch EmbeddingBag, mode="sum" with per-sample weights) and
the numpy runtime (`vectors`) call this same `featurise`, so a new item gets the vector the
model would have given it: there is no second implementation to drift.

Tokens per column kind (the spec says which columns are which):
  text         words (Unicode \\w+ after NFKC and casefold), word bigrams, and character
               trigrams of each word with boundary marks ("<wo", "wor", "ord", "rd>"): the
               trigrams place unseen words and misspellings near known ones
  categorical  each value of a "|"-separated list ("Action|Comedy"), stripped
  numeric      the bucket of the value among edges fixed at training (quantiles); unparsable
               or missing values get a bucket of their own
Each column's tokens share weight 1/sqrt(count), so a long description does not drown a
category. Hashing uses CRC-32 of the UTF-8 bytes (stable across processes, unlike hash()).

Why hashing rather than a vocabulary: the table's size is fixed whatever the catalog (no
per-item or per-word object at load), and an unseen word still lands in a trained row
(through its trigrams). Why not a pretrained text model: nothing may download weights at
run time, and a Lambda layer has no room for one.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import re
import unicodedata
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

MAX_TEXT_CHARS = 2000  # characters of one text field featurised; the rest is ignored
MAX_VALUES = 64  # values of one categorical field featurised
DEFAULT_BUCKETS = 1 << 16
NUMERIC_BUCKETS = 16
VECTOR_CHUNK = 256  # items summed at a time by `vectors` (~30 features x D floats each)
_WORD = re.compile(r"\w+", re.UNICODE)
_KINDS = ("text", "categorical", "numeric")


@dataclass(frozen=True)
class ContentSpec:
    """Which columns are featurised and how; stored in the bundle's manifest as JSON."""

    text: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    numeric: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # column -> edges
    n_buckets: int = DEFAULT_BUCKETS

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.text, *self.categorical, *self.numeric)

    def to_json(self) -> dict:
        return {
            "text": list(self.text),
            "categorical": list(self.categorical),
            "numeric": {k: list(v) for k, v in self.numeric.items()},
            "n_buckets": self.n_buckets,
        }

    @classmethod
    def from_json(cls, raw: object) -> ContentSpec:
        """Raises ValueError with one readable line on anything malformed."""
        if not isinstance(raw, dict):
            raise ValueError("content spec: not an object")
        try:
            spec = cls(
                text=tuple(str(c) for c in raw.get("text", [])),
                categorical=tuple(str(c) for c in raw.get("categorical", [])),
                numeric={
                    str(k): tuple(float(e) for e in v)
                    for k, v in dict(raw.get("numeric", {})).items()
                },
                n_buckets=int(raw.get("n_buckets", DEFAULT_BUCKETS)),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"content spec: {e}") from None
        spec.check()
        return spec

    def check(self) -> None:
        if self.n_buckets < 1:
            raise ValueError("content spec: n_buckets must be positive")
        names = self.columns
        if len(set(names)) != len(names):
            raise ValueError("content spec: a column is named under two kinds")
        for name, edges in self.numeric.items():
            if any(not math.isfinite(e) for e in edges) or list(edges) != sorted(edges):
                raise ValueError(f"content spec: edges of {name!r} must be finite and sorted")


@functools.lru_cache(maxsize=1 << 18)
def _bucket(column: str, token: str, n_buckets: int) -> int:
    # Cached: trigrams, words and categories repeat across a catalog, so most calls are hits.
    raw = f"{column}\x1f{token}".encode("utf-8", "surrogatepass")
    return zlib.crc32(raw) % n_buckets


def text_tokens(value: str) -> list[str]:
    words = _WORD.findall(unicodedata.normalize("NFKC", value[:MAX_TEXT_CHARS]).casefold())
    tokens = [f"w:{w}" for w in words]
    tokens += [f"b:{a} {b}" for a, b in itertools.pairwise(words)]
    for w in words:
        marked = f"<{w}>"
        tokens += [f"c:{marked[i : i + 3]}" for i in range(max(1, len(marked) - 2))]
    return tokens


def categorical_tokens(value: str) -> list[str]:
    parts = (p.strip() for p in value.split("|")[:MAX_VALUES])
    return [f"v:{p}" for p in parts if p]


def numeric_token(value: str, edges: Sequence[float]) -> list[str]:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ["n:missing"] if value.strip() else []
    if not math.isfinite(x):
        return ["n:missing"]
    return [f"n:{bisect.bisect_right(edges, x)}"]  # as np.searchsorted(side="right")


@functools.lru_cache(maxsize=1 << 16)
def _word_buckets(column: str, word: str, n_buckets: int) -> tuple[int, ...]:
    """The buckets of a word's own token and its character trigrams (text_tokens' per-word
    part). Cached per word: words repeat across titles, and a hit skips building and
    hashing ~6 strings."""
    marked = f"<{word}>"
    trigrams = (marked[i : i + 3] for i in range(max(1, len(marked) - 2)))
    return (
        _bucket(column, f"w:{word}", n_buckets),
        *(_bucket(column, f"c:{t}", n_buckets) for t in trigrams),
    )


def text_buckets(column: str, value: str, n_buckets: int) -> list[int]:
    """The buckets of text_tokens(value), as a multiset (featurise's weights are the same
    for every token of a column, so their order does not matter)."""
    words = _WORD.findall(unicodedata.normalize("NFKC", value[:MAX_TEXT_CHARS]).casefold())
    out = [b for w in words for b in _word_buckets(column, w, n_buckets)]
    out += [_bucket(column, f"b:{a} {b}", n_buckets) for a, b in itertools.pairwise(words)]
    return out


def _column_buckets(spec: ContentSpec, column: str, text: str) -> list[int]:
    n = spec.n_buckets
    if column in spec.numeric:
        return [_bucket(column, t, n) for t in numeric_token(text, spec.numeric[column])]
    if column in spec.categorical:
        return [_bucket(column, t, n) for t in categorical_tokens(text)]
    return text_buckets(column, text, n)


def _row_features(spec: ContentSpec, row: Mapping[str, object]) -> dict[int, float]:
    out: dict[int, float] = {}
    for column in spec.columns:
        value = row.get(column)
        if value is None:
            continue
        buckets = _column_buckets(spec, column, value if isinstance(value, str) else str(value))
        if not buckets:
            continue
        w = 1.0 / math.sqrt(len(buckets))
        for b in buckets:
            out[b] = out.get(b, 0.0) + w
    return out


@dataclass
class Features:
    """Sparse features of n items in CSR form (what EmbeddingBag takes as input/offsets)."""

    indices: np.ndarray  # int64 (nnz,)
    offsets: np.ndarray  # int64 (n + 1,)
    weights: np.ndarray  # float32 (nnz,)

    def __len__(self) -> int:
        return len(self.offsets) - 1


def featurise(spec: ContentSpec, rows: Sequence[Mapping[str, object]]) -> Features:
    """The hashed features of each row (a mapping column -> value; missing columns are empty)."""
    indices: list[int] = []
    weights: list[float] = []
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    for i, row in enumerate(rows):
        feats = _row_features(spec, row)
        indices.extend(sorted(feats))
        weights.extend(feats[b] for b in sorted(feats))
        offsets[i + 1] = len(indices)
    return Features(
        indices=np.asarray(indices, dtype=np.int64),
        offsets=offsets,
        weights=np.asarray(weights, dtype=np.float32),
    )


def vectors(features: Features, table: np.ndarray) -> np.ndarray:
    """(n, D) float32 content vectors: per item, the weighted sum of its rows of `table`
    (n_buckets, D) in any float dtype. An item with no features gets zeros."""
    n, d = len(features), table.shape[1]
    out = np.zeros((n, d), dtype=np.float32)
    if len(features.indices) == 0:
        return out
    # Each distinct row cast once (a float16 table's cast per feature was a third of the
    # cost), each item's run of features summed in order by reduceat (np.add.at, unbuffered,
    # was most of the rest), in chunks of items whose (features, D) temporaries stay in the
    # CPU's cache: 10,000 items at ~30 features, 0.14 -> 0.05 s CPU.
    used, at = np.unique(features.indices, return_inverse=True)
    rows = table[used].astype(np.float32, copy=False)
    off = features.offsets
    for lo in range(0, n, VECTOR_CHUNK):
        hi = min(n, lo + VECTOR_CHUNK)
        a, b = off[lo], off[hi]
        if a == b:
            continue
        contrib = rows[at[a:b]] * features.weights[a:b, None]
        full = np.flatnonzero(np.diff(off[lo : hi + 1]) > 0)  # reduceat copies, not sums,
        out[lo + full] = np.add.reduceat(contrib, off[lo:hi][full] - a, axis=0)  # empty runs
    return out


def infer_spec(
    columns: Mapping[str, Sequence[str]],
    overrides: Mapping[str, str] | None = None,
    n_buckets: int = DEFAULT_BUCKETS,
) -> ContentSpec:
    """Which kind each catalog column is, from its values (strings, one per item).

    numeric: at least 95% of non-empty values parse as finite numbers; categorical: values
    hold "|" lists, or are short (under 3 words) and repeat (distinct < half the items);
    text: the rest. `overrides` maps a column to "text", "categorical", "numeric" or "skip".
    """
    overrides = dict(overrides or {})
    for name, kind in overrides.items():
        if kind not in (*_KINDS, "skip"):
            raise ValueError(f"content column {name!r}: unknown kind {kind!r}")
    kinds: dict[str, list[str]] = {k: [] for k in _KINDS}
    edges: dict[str, tuple[float, ...]] = {}
    for name, values in columns.items():
        kind = overrides.get(name) or _guess_kind(values)
        if kind == "skip":
            continue
        kinds[kind].append(name)
        if kind == "numeric":
            edges[name] = _quantile_edges(values)
    return ContentSpec(
        text=tuple(kinds["text"]),
        categorical=tuple(kinds["categorical"]),
        numeric={n: edges[n] for n in kinds["numeric"]},
        n_buckets=n_buckets,
    )


def _floats(values: Sequence[str]) -> np.ndarray:
    out = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append(x)
    return np.asarray(out, dtype=np.float64)


def _guess_kind(values: Sequence[str]) -> str:
    present = [v for v in values if v and v.strip()]
    if not present:
        return "skip"
    if len(_floats(present)) >= 0.95 * len(present):
        return "numeric"
    if sum("|" in v for v in present) >= 0.05 * len(present):
        return "categorical"
    short = sum(len(v.split()) < 3 for v in present) >= 0.9 * len(present)
    if short and len(set(present)) < 0.5 * len(present):
        return "categorical"
    return "text"


def _quantile_edges(values: Sequence[str]) -> tuple[float, ...]:
    x = _floats(values)
    if len(x) == 0:
        return ()
    qs = np.quantile(x, np.linspace(0, 1, NUMERIC_BUCKETS + 1)[1:-1])
    return tuple(float(e) for e in np.unique(qs))


def spec_from_manifest(manifest: Mapping[str, object]) -> ContentSpec | None:
    """The bundle's content spec (manifest["content"]), or None for a model without
    content; ValueError with one line if it is malformed."""
    raw = manifest.get("content")
    return None if raw is None else ContentSpec.from_json(raw)


def new_item_offset(manifest: Mapping[str, object]) -> float:
    """The calibrated lift of a new item's score (manifest "new_items", chosen on valid by
    training/new_items.py); 0.0 for a bundle without one or with a malformed one."""
    record = manifest.get("new_items")
    if not isinstance(record, Mapping):
        return 0.0
    try:
        offset = float(record.get("offset", 0.0))
    except (TypeError, ValueError):
        return 0.0
    return offset if math.isfinite(offset) else 0.0


# Content-only catalog rows a bundle may lift (the same bound as live new items,
# lmrec.liveitems.MAX_LIVE): each is one more scored row per request, and on one core
# 10,000 rows cost about 1.2 ms, 67,000 about 16 ms (over the 10 ms p99 budget at rung L).
MAX_LIFTED_ROWS = 10_000


def content_only_rows(manifest: Mapping[str, object], n_items: int) -> np.ndarray:
    """The catalog rows the model knows by their content alone (items no training row held,
    manifest "new_items"."rows"), sorted: serving lifts them by the offset as it lifts live
    new items. Empty for a bundle without the list; a malformed one is ignored (its rows are
    then scored without the lift, as before the list existed) rather than failing a load."""
    empty = np.empty(0, np.int64)
    record = manifest.get("new_items")
    rows = record.get("rows") if isinstance(record, Mapping) else None
    if not isinstance(rows, list) or not rows or len(rows) > MAX_LIFTED_ROWS:
        return empty
    if not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= n_items for r in rows):
        return empty
    return np.unique(np.asarray(rows, dtype=np.int64))


@dataclass
class RowLift:
    """A constant lift of some catalog rows' scores, in the experts' form (lmrec.transitions,
    lmrec.history): the new-item offset on the rows content alone places."""

    rows: np.ndarray  # sorted, unique
    offset: float

    def boosts(self, histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(history index, row, lift) for every row, for each history, sorted by history."""
        n, m = len(histories), len(self.rows)
        lift = np.full(n * m, self.offset, np.float32)
        return np.repeat(np.arange(n), m), np.tile(self.rows, n), lift

    def add_to(self, scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
        """scores (B, n_items + 1) plus the lift on its rows, in place."""
        scores[:, self.rows] += np.float32(self.offset)
        return scores

    def at(self, candidates: np.ndarray) -> np.ndarray:
        """(len(candidates),) float32: the lift of each candidate row (0 for the others)."""
        lift = np.full(len(self.rows), self.offset, np.float32)
        return values_at(self.rows, lift, candidates)


def values_at(keys: np.ndarray, values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(len(candidates),) float32: values[j] where keys[j] == candidate, else 0; `keys`
    sorted and distinct. O(candidates x log keys): the candidates alone are looked up."""
    out = np.zeros(len(candidates), np.float32)
    if not len(keys):
        return out
    at = np.minimum(np.searchsorted(keys, candidates), len(keys) - 1)
    hit = keys[at] == candidates
    out[hit] = values[at[hit]]
    return out


def row_lift(manifest: Mapping[str, object], n_items: int) -> RowLift | None:
    """The bundle's lift of its content-only rows, or None. Only a positive lift: serving
    merges boosted rows into the model's own top-k on the rule that a boost can only raise a
    score (lmrec.recommend), and training never chooses a negative offset."""
    offset = new_item_offset(manifest)
    rows = content_only_rows(manifest, n_items)
    return RowLift(rows, offset) if offset > 0 and len(rows) else None


def new_item_scores(hidden: np.ndarray, vectors: np.ndarray, offset: float) -> np.ndarray:
    """(B, m) scores of m new items for B queries: hidden (B, D) @ content vectors (m, D)
    plus `offset`. A new item has only the content part of a vector, so its raw score sits
    below a known item's (id + content); the offset, chosen on valid, puts it back on the
    known items' scale. Serving (lmrec.liveitems) and evaluation both score new items here."""
    return (hidden.astype(np.float32) @ vectors.T.astype(np.float32)) + np.float32(offset)
