"""The live item overlay: items stored after the serving model was built, scored beside it.

For one model, the item store's records split in two:
  - ids the model's catalog lacks: NEW items. Each gets its content vector from the bundle's
    content table (lmrec.content, the featuriser training used), in the item table's space,
    so hidden @ vector is its score and cosine with item rows finds similar items. At most
    MAX_LIVE of them (the newest by update) are held: an (m, D) float32 matrix, scored with
    one (m x D) product per request (m = 10,000, D = 64: 2.5 MB and ~0.2 ms). Past the cap
    the older ones are stored but not served, health says how many, and PUT refuses new ids
    until a retrain absorbs them.
  - ids the catalog holds, changed after the model's data was read (manifest data_read_at):
    their display fields come from the record, and available=false hides their row from
    every reply; the row itself stays, so histories holding the item still encode it.
    Records older than the data are the model's own catalog already.
A bundle without a content table serves new items for display only: stored, returned by
GET similar for nothing, named in warnings, never scored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from lmrec import content
from lmrec.itemstore import ItemRecord

log = logging.getLogger(__name__)
MAX_LIVE = 10_000


def data_cut_ms(manifest: dict) -> int:
    """When the model's data was read (records changed before are in its catalog)."""
    for key in ("data_read_at", "created_at"):
        try:
            return int(datetime.fromisoformat(str(manifest[key])).timestamp() * 1000)
        except (KeyError, ValueError, TypeError):
            continue
    return 0


def content_of(weights: dict, manifest: dict, d_model: int):
    """(spec, table) when the bundle has a usable content part, else None."""
    table = weights.get("content.weight")
    if table is None or "content" not in manifest:
        return None
    try:
        spec = content.ContentSpec.from_json(manifest["content"])
    except ValueError as exc:
        log.warning("content part not used: %s", exc)
        return None
    if table.ndim != 2 or table.shape != (spec.n_buckets, d_model):
        log.warning(
            "content part not used: table %s, spec %d x %d", table.shape, spec.n_buckets, d_model
        )
        return None
    return spec, table


def categories_of(value: object) -> list[str]:
    """A "|"-separated list, as the featuriser reads categorical columns."""
    if value is None:
        return []
    return [p.strip() for p in str(value).split("|") if p.strip()]


@dataclass
class Overlay:
    version: str
    records: list[ItemRecord]  # new items, newest first
    index: dict[str, int]
    vectors: np.ndarray | None  # (m, D) float32; None: the model has no content part
    unit: np.ndarray | None
    available: np.ndarray  # (m,) bool
    added_s: np.ndarray  # (m,) float64 unix seconds
    categories: dict[str, np.ndarray]  # category -> indices of the new items in it
    hidden_rows: np.ndarray  # catalog rows made unavailable
    catalog_fields: dict[int, dict] = field(default_factory=dict)
    # catalog rows changed by PUT (sorted) and, by category, the positions of those in it:
    # their stored categories decide the category filters, as their stored fields are shown
    changed_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    changed_categories: dict[str, np.ndarray] = field(default_factory=dict)
    over_cap: int = 0
    offset: float = 0.0  # the model's new-item lift (lmrec.content.new_item_offset)

    @property
    def scored(self) -> bool:
        return self.vectors is not None

    def __len__(self) -> int:
        return len(self.records)

    def attributes(self, i: int, category_column: str | None) -> dict:
        out = self.records[i].attributes()
        if category_column and category_column in out:
            out[category_column] = categories_of(out[category_column])
        return out


def empty(version: str) -> Overlay:
    return Overlay(
        version, [], {}, None, None, np.zeros(0, bool), np.zeros(0), {}, np.zeros(0, np.int64)
    )


def build(rec, records: Iterable[ItemRecord], cache: dict) -> Overlay:
    """The overlay of `records` for Recommender `rec`; `cache` (per model version) keeps
    vectors by (id, updated_ms) so a poll featurises only what changed."""
    records = list(records)
    catalog, cut = rec.catalog, data_cut_ms(rec.bundle.manifest)
    rows = catalog.lookup([r.item_id for r in records])
    new = sorted(
        (r for r, row in zip(records, rows.tolist(), strict=True) if row == 0),
        key=lambda r: -r.updated_ms,
    )
    hidden, fields = [], {}
    for r, row in zip(records, rows.tolist(), strict=True):
        if row and r.updated_ms > cut:
            fields[row] = r.attributes()
            if not r.available:
                hidden.append(row)
    kept = new[:MAX_LIVE]
    part = content_of(rec.bundle.weights, rec.bundle.manifest, rec.model.d)
    vectors = unit = None
    if part is not None:
        vectors = _vectors(kept, part, cache, rec.model.d)
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    cat = catalog.category_column
    changed = sorted(fields)  # the catalog rows changed since the model's data
    return Overlay(
        version=rec.version,
        records=kept,
        index={r.item_id: i for i, r in enumerate(kept)},
        vectors=vectors,
        unit=unit,
        available=np.asarray([r.available for r in kept], bool),
        added_s=np.asarray([r.added_ms / 1000 for r in kept], np.float64),
        categories=_category_index((r.fields for r in kept), cat),
        hidden_rows=np.asarray(sorted(hidden), np.int64),
        catalog_fields=fields,
        changed_rows=np.asarray(changed, np.int64),
        changed_categories=_category_index((fields[row] for row in changed), cat),
        over_cap=len(new) - len(kept),
        offset=content.new_item_offset(rec.bundle.manifest),
    )


def _category_index(fields: Iterable[dict], column: str | None) -> dict[str, np.ndarray]:
    """Category -> the positions (in `fields`' order) of the items in it."""
    members: dict[str, list[int]] = {}
    for i, f in enumerate(fields) if column else ():
        for name in dict.fromkeys(categories_of(f.get(column))):
            members.setdefault(name, []).append(i)
    return {name: np.asarray(at, np.int64) for name, at in members.items()}


def knows_category(ov: Overlay | None, name: str) -> bool:
    """Whether an item stored since the model (new, or a changed catalog item) is in it."""
    return ov is not None and (name in ov.categories or name in ov.changed_categories)


def category_verdict(ov: Overlay, f) -> tuple[np.ndarray, np.ndarray] | None:
    """(changed catalog rows, bool: whether each passes the request's category filters by
    its stored categories), or None when no category filter or no changed row applies.
    O(changed rows + the named categories' members): no step per item in Python."""
    rows = ov.changed_rows
    if not len(rows) or not (f.include_categories or f.exclude_categories):
        return None
    none = np.zeros(0, np.int64)
    ok = np.zeros(len(rows), bool) if f.include_categories else np.ones(len(rows), bool)
    for name in f.include_categories:
        ok[ov.changed_categories.get(name, none)] = True
    for name in f.exclude_categories:
        ok[ov.changed_categories.get(name, none)] = False
    return rows, ok


def _vectors(kept: list[ItemRecord], part, cache: dict, d: int) -> np.ndarray:
    spec, table = part
    todo = [r for r in kept if (r.item_id, r.updated_ms) not in cache]
    if todo:
        found = content.vectors(content.featurise(spec, [r.fields for r in todo]), table)
        for r, v in zip(todo, found, strict=True):
            cache[(r.item_id, r.updated_ms)] = v
    keys = {(r.item_id, r.updated_ms) for r in kept}
    for key in [k for k in cache if k not in keys]:  # older versions, items past the cap
        del cache[key]
    if not kept:
        return np.zeros((0, d), np.float32)
    return np.stack([cache[key] for key in ((r.item_id, r.updated_ms) for r in kept)])


@dataclass(frozen=True)
class Explore:
    """Reserve round(k * share) slots (at least one when share > 0) for new items younger
    than max_age_s, ranked by their content score (Personalize's explorationWeight and
    explorationItemAgeCutOff)."""

    share: float = 0.0
    max_age_s: float = 72 * 3600.0


def allowed(ov: Overlay, f, seen: set[str]) -> np.ndarray:
    """(m,) bool: available, scored, and passing the request's filters. O(excluded ids +
    named categories): no step per new item."""
    keep = ov.available.copy() if ov.scored else np.zeros(len(ov), bool)
    excluded = set(f.exclude_items) | (seen if f.exclude_seen else set())
    keep[[ov.index[i] for i in excluded if i in ov.index]] = False
    empty = np.zeros(0, np.int64)
    if f.include_categories:
        wanted = np.zeros(len(ov), bool)
        for name in f.include_categories:
            wanted[ov.categories.get(name, empty)] = True
        keep &= wanted
    for name in f.exclude_categories:
        keep[ov.categories.get(name, empty)] = False
    return keep


def scores(
    ov: Overlay, query: np.ndarray, mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k best allowed new items and their scores (hidden @ vector + the model's offset,
    lmrec.content.new_item_scores), best first: one (m x D) product and a partial sort, no
    object per new item."""
    from lmrec.ivf import top_k

    at = np.flatnonzero(mask)
    if ov.vectors is None or not len(at) or k <= 0:
        return at[:0], np.zeros(0, np.float32)
    values = content.new_item_scores(query[None], ov.vectors[at], ov.offset)[0]
    best = top_k(values, k)
    return at[best], values[best]


def _recs(ov: Overlay, at: np.ndarray, values: np.ndarray) -> list:
    from lmrec.recommend import Recommendation

    return [
        Recommendation(ov.records[i].item_id, float(v), 0)
        for i, v in zip(at.tolist(), values.tolist(), strict=True)
    ]


def merge(base: list, ov: Overlay, query, mask, k: int, explore: Explore | None, now_s: float):
    """The model's top-k and the new items' top-k as one top-k (Recommendation rows of new
    items are 0), then the exploration slots when asked for: the young items' best by
    score replace the lowest others, so round(k * share) of the k are young."""
    top = sorted(base + _recs(ov, *scores(ov, query, mask, k)), key=lambda r: -r.score)[:k]
    if explore is None or explore.share <= 0 or not mask.any():
        return top
    n = min(k, max(1, round(k * explore.share)))
    young_mask = mask & (now_s - ov.added_s <= explore.max_age_s)
    young = _recs(ov, *scores(ov, query, young_mask, n))
    names = {r.item_id for r in young}
    shown = [r for r in top if r.row == 0 and r.item_id in names]
    # By id: the young items' scores come from a second product over fewer rows, which may
    # differ from the first in the last bit, so a shown item must not be added again.
    shown_ids = {r.item_id for r in shown}
    extra = [r for r in young if r.item_id not in shown_ids][: max(0, n - len(shown))]
    if not extra:
        return top
    others = [r for r in top if not (r.row == 0 and r.item_id in names)]
    head = sorted(shown + others[: k - len(extra) - len(shown)], key=lambda r: -r.score)
    return head + extra


def similar(ov: Overlay, unit_query: np.ndarray, skip: str | None, k: int):
    """(indices, cosines) of the k available new items nearest `unit_query`."""
    if ov.unit is None or not len(ov):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    mask = ov.available.copy()
    if skip is not None and skip in ov.index:
        mask[ov.index[skip]] = False
    at = np.flatnonzero(mask)
    from lmrec.ivf import top_k

    sims = ov.unit[at] @ unit_query.astype(np.float32)
    order = top_k(sims, k)
    return at[order], sims[order]
