"""Item content for the model: the catalog's columns as hashed features (lmrec.content).

Training and serving share one featuriser, lmrec.content.featurise: here its CSR output
feeds torch's EmbeddingBag(mode="sum", per_sample_weights) directly, so an item the model
never saw gets, at serving time, exactly the vector the model would have given it
(lmrec.content.vectors over the same table).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lmrec import content

from training.config import ConfigError, DataConfig
from training.data import Interactions


@dataclass
class ItemContent:
    """The content features of items 0..n_items (row 0, padding, has none)."""

    spec: content.ContentSpec
    features: content.Features
    id_dropout: float
    # (n_items + 1,) bool, set once the split is known: the items with training rows. The
    # others (first seen after the cut, Split.never_trained) are placed by content alone, as
    # serving places an item added after the data was cut; None: every item has an id part.
    trained: np.ndarray | None = None

    @functools.cached_property
    def digest(self) -> str:
        """A hash of the features themselves: a checkpoint that read another catalog (the same
        interactions, other titles) must not resume (training/pipeline.py _identity)."""
        h = hashlib.sha256(json.dumps(self.spec.to_json(), sort_keys=True).encode())
        for part in (self.features.indices, self.features.offsets, self.features.weights):
            h.update(np.ascontiguousarray(part).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict:
        """What the report says about the columns used."""
        s = self.spec
        return {
            "text": list(s.text),
            "categorical": list(s.categorical),
            "numeric": {name: len(edges) + 1 for name, edges in s.numeric.items()},
            "n_buckets": s.n_buckets,
            "id_dropout": self.id_dropout,
            "mean_features_per_item": round(
                float(np.diff(self.features.offsets)[1:].mean()) if len(self.features) > 1 else 0,
                1,
            ),
        }


def parse_overrides(text: str) -> dict[str, str]:
    """ "title:text,year:skip" -> {"title": "text", "year": "skip"}; ConfigError if malformed."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, kind = part.rpartition(":")
        if not sep or not name.strip():
            raise ConfigError(f"content_columns: {part!r} is not column:kind")
        out[name.strip()] = kind.strip()
    return out


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def catalog_rows(catalog: pd.DataFrame) -> tuple[dict[str, list[str]], list[dict[str, str]]]:
    """Columns (name -> values as strings) and rows (column -> value), in catalog order."""
    columns = {str(c): [_cell(v) for v in catalog[c].tolist()] for c in catalog.columns}
    names = list(columns)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return columns, rows


def item_content(data: Interactions, cfg: DataConfig) -> ItemContent | None:
    """The items' content features, or None: content off, no catalog, or no usable column
    (then the job trains exactly as without content). Raises ConfigError for a bad override
    or `content=on` with nothing to use."""
    if cfg.content == "off":
        return None
    overrides = parse_overrides(cfg.content_columns)
    if data.catalog is None or data.catalog.shape[1] == 0:
        if cfg.content == "on":
            raise ConfigError("content=on needs an item catalog (items.csv) with columns")
        return None
    columns, rows = catalog_rows(data.catalog)
    unknown = sorted(set(overrides) - set(columns))
    if unknown:
        raise ConfigError(f"content_columns: {unknown[0]!r} is not a catalog column")
    try:
        spec = content.infer_spec(columns, overrides, cfg.content_buckets)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not spec.columns:
        if cfg.content == "on":
            raise ConfigError("content=on, but no catalog column is usable as content")
        return None
    features = content.featurise(spec, [{}, *rows])  # row 0: padding, no features
    return ItemContent(spec, features, cfg.content_id_dropout)
