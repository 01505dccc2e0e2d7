"""Recommendations from a verified bundle: encode a history, score the catalog, filter, top-k,
explain; similar items; the popular fallback for users with no usable history.

Small catalogs are scored whole. A bundle with transitions (lmrec.transitions) adds each
history's boost to the scores of the few items its newest items lead to; those items join
the model's own top-k as candidates, so the result is the exact top-k of the sum over the
model's candidates (with an index, its probed top-k). A bundle
with an item index (lmrec.ivf, written for large
catalogs) scores only the items of the probed lists; filters are masks on those candidates,
and a filter that leaves few of them probes more lists in proportion, or scores every allowed
item when few are allowed, so k items come back whenever k are allowed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lmrec import bundle as bundle_mod
from lmrec import content
from lmrec.history import HistoryExpert
from lmrec.ivf import top_k
from lmrec.student import NumpySASRec
from lmrec.transitions import Transitions

PERSONALIZED = "personalized"
POPULAR = "popular"
# With an index, at most this many allowed items are scored exactly rather than probed
# (a gather and a 48-wide product: about 1 ms on one EPYC core).
EXACT_BELOW = 50_000
DENSE_SHARE = 0.9  # above this share of allowed items, probed lists are copied whole


@dataclass
class Recommendation:
    item_id: str
    score: float
    row: int  # internal item row, for callers that look up catalog fields
    reason: str | None = None  # the history item that contributed most
    reason_row: int | None = None  # its row: the API reads its title without a lookup


@dataclass
class Result:
    items: list[Recommendation]
    strategy: str  # PERSONALIZED or POPULAR
    history_length: int = 0
    query: np.ndarray | None = None  # (D,) the user's vector: live items are scored with it


@dataclass
class Filters:
    k: int = 10
    exclude_seen: bool = True
    exclude_items: Sequence[str] = ()
    include_categories: Sequence[str] = ()
    exclude_categories: Sequence[str] = ()
    explain: bool = True
    exclude_rows: np.ndarray | None = None  # rows made unavailable (lmrec.liveitems)
    # (rows, passes): catalog rows whose categories were changed by PUT /v1/items, and
    # whether each passes the category filters by its stored categories (lmrec.liveitems)
    recategorised: tuple[np.ndarray, np.ndarray] | None = None


class Recommender:
    def __init__(self, loaded: bundle_mod.Bundle):
        self.bundle = loaded
        self.model = NumpySASRec(loaded.weights, loaded.config)
        self.catalog = loaded.catalog
        self.index = loaded.index
        self.transitions = loaded.transitions
        self.history = loaded.history  # repeats kept: the user's own items boosted
        # Items no training row held are rows of content alone: lifted by the new-item
        # offset, as live new items are (lmrec.liveitems), and as the job measured them.
        self.lift = content.row_lift(loaded.manifest, self.model.n_items)
        # What a request that does not say gets: the data's answer (lmrec.bundle)
        self.default_exclude_seen = bundle_mod.default_exclude_seen(loaded.manifest)
        self.default_cold_start = bundle_mod.default_cold_start(loaded.manifest)
        self.exact_below = EXACT_BELOW
        if self.index is not None:
            self.index.attach(self.model.table, self.model.scale)
        self._norms: np.ndarray | None = None  # every row's norm, on first exact cosine
        self.popularity = loaded.popularity.copy()
        self.popularity[0] = -np.inf

    @property
    def experts(self) -> list[Transitions | HistoryExpert | content.RowLift]:
        """Boosts beside the model's scores (product of experts): transitions, user history,
        the new-item lift of the rows content alone places."""
        return [e for e in (self.transitions, self.history, self.lift) if e is not None]

    @property
    def norms(self) -> np.ndarray:
        """(N + 1,) item norms for cosine over the whole table (a catalog without an index),
        computed on first use: a cold start does not pay for them."""
        if self._norms is None:
            self._norms = np.maximum(self.model.item_norms(), 1e-12)
        return self._norms

    @classmethod
    def load(cls, uri: str, cache_dir: str | None = None) -> Recommender:
        return cls(bundle_mod.load(uri, cache_dir))

    @property
    def version(self) -> str:
        return self.bundle.version

    def _allowed(self, history: np.ndarray, f: Filters) -> np.ndarray:
        allowed = np.ones(self.model.n_items + 1, dtype=bool)
        allowed[0] = False
        if f.include_categories:
            wanted = np.zeros_like(allowed)
            for cat in f.include_categories:
                wanted[self.catalog.category_rows(cat)] = True
            allowed &= wanted
        for cat in f.exclude_categories:
            allowed[self.catalog.category_rows(cat)] = False
        if f.recategorised is not None:  # before the exclusions below, which still apply
            rows, passes = f.recategorised
            allowed[rows] = passes
        if f.exclude_items:
            allowed[self.catalog.rows(f.exclude_items)[0]] = False
        if f.exclude_seen and len(history):
            allowed[history] = False
        if f.exclude_rows is not None and len(f.exclude_rows):
            allowed[f.exclude_rows] = False
        return allowed

    @staticmethod
    def _top(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
        return top_k(np.where(allowed, scores, -np.inf), min(k, int(allowed.sum())))

    def _allowed_rows(
        self, query: np.ndarray, allowed: np.ndarray, cosine: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed row, gathered and scored (few rows allowed)."""
        rows = np.flatnonzero(allowed)
        if not cosine:
            return rows, self.model.score_rows(query, rows)
        vectors = self.model.embed(rows)
        norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12)
        return rows, (vectors @ query) / (norms * np.linalg.norm(query))

    def _probe(
        self, query: np.ndarray, allowed: np.ndarray, k: int, n_probe: int, cosine: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """The allowed rows of the probed lists and their exact scores, with the probes
        scaled by 1 / (share allowed) so a narrow filter leaves about as many candidates as
        an open one, and widened until k pass (at worst every list: exact)."""
        assert self.index is not None
        share = int(allowed.sum()) / self.model.n_items
        n_probe = min(self.index.n_lists, math.ceil(n_probe / share))
        # Seen items alone leave nearly everything allowed: whole slices, masked after.
        sparse = allowed if share < DENSE_SHARE else None
        while True:
            rows, scores = self.index.search(query, n_probe, cosine, sparse)
            if sparse is None:
                keep = allowed[rows]
                rows, scores = rows[keep], scores[keep]
            if len(rows) >= k or n_probe >= self.index.n_lists:
                return rows, scores
            n_probe = min(self.index.n_lists, n_probe * 4)

    def _rank(
        self, query: np.ndarray, allowed: np.ndarray, k: int, cosine: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k allowed rows for one query vector, and their scores (inner product, or
        cosine of item embeddings): through the index when the bundle has one and it pays,
        over the allowed rows when few are allowed, else over the whole table."""
        k = min(k, int(allowed.sum()))
        if k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        found = None
        n_probe = 0
        if self.index is not None:
            n_probe = self.index.n_probe_similar if cosine else self.index.n_probe
        if self.index is not None and n_probe < self.index.n_lists:
            if int(allowed.sum()) <= self.exact_below:
                found = self._allowed_rows(query, allowed, cosine)
            else:
                found = self._probe(query, allowed, k, n_probe, cosine)
        if found is None:
            scores = self.model.score(query[None])[0]
            if cosine:
                scores /= self.norms * float(np.linalg.norm(query))
            top = self._top(scores, allowed, k)
            return top, scores[top]
        rows, scores = found
        best = top_k(scores, k)
        return rows[best], scores[best]

    def recommend_many(self, histories: list[np.ndarray], filters: list[Filters]) -> list[Result]:
        """One encoder pass for the whole batch; filters and top-k per request."""
        results: list[Result | None] = [None] * len(histories)
        warm = [i for i, h in enumerate(histories) if len(h)]
        if warm:
            enc = self.model.encode([histories[i] for i in warm])
            # Without an index, one product scores the whole batch against the catalog.
            scores = self.model.score(enc.hidden) if self.index is None else None
            boosts = self._boosts([histories[i] for i in warm], scores)
            for j, i in enumerate(warm):
                f, hist = filters[i], histories[i]
                allowed = self._allowed(hist, f)
                if scores is None:
                    top, values = self._rank(enc.hidden[j], allowed, f.k)
                    if boosts is not None:
                        top, values = self._with_boost(
                            enc.hidden[j], allowed, f.k, top, values, boosts[j]
                        )
                else:
                    top = self._top(scores[j], allowed, f.k)
                    values = scores[j, top]
                reasons = self._reasons(enc, j, top) if f.explain else [None] * len(top)
                ids = self.catalog.item_ids
                results[i] = Result(
                    [
                        Recommendation(
                            ids[r - 1], float(v), int(r), None if b is None else ids[b - 1], b
                        )
                        for r, v, b in zip(top, values, reasons, strict=True)
                    ],
                    PERSONALIZED,
                    len(hist),
                    enc.hidden[j],
                )
        for i, h in enumerate(histories):
            if results[i] is None:  # no usable history: the popular fallback
                top = self._top(self.popularity, self._allowed(h, filters[i]), filters[i].k)
                results[i] = Result(
                    [
                        Recommendation(
                            self.catalog.item_ids[r - 1], float(self.popularity[r]), int(r)
                        )
                        for r in top
                    ],
                    POPULAR,
                    0,
                )
        return results  # type: ignore[return-value]

    def _boosts(
        self, histories: list[np.ndarray], scores: np.ndarray | None
    ) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Each history's (items, boost) from the experts (transition table, user history);
        added in place to `scores` when the whole catalog was scored (then nothing is
        returned)."""
        if not self.experts:
            return None
        if scores is not None:
            for expert in self.experts:
                expert.add_to(scores, histories)
            return None
        rows, items, boost = self._summed_boosts(histories)
        cut = np.searchsorted(rows, np.arange(len(histories) + 1))  # rows come sorted
        return [(items[a:b], boost[a:b]) for a, b in itertools.pairwise(cut)]

    def _summed_boosts(
        self, histories: list[np.ndarray], experts: Sequence | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(history index, item, boost) summed over the experts (all by default), one entry
        per pair, sorted."""
        parts = [expert.boosts(histories) for expert in (experts or self.experts)]
        if len(parts) == 1:
            return parts[0]
        rows, items, boost = (np.concatenate(p) for p in zip(*parts, strict=True))
        width = self.model.n_items + 1
        keys, where = np.unique(rows * width + items, return_inverse=True)
        total = np.bincount(where, weights=boost, minlength=len(keys)).astype(np.float32)
        return keys // width, keys % width, total

    def _with_boost(
        self,
        query: np.ndarray,
        allowed: np.ndarray,
        k: int,
        top: np.ndarray,
        values: np.ndarray,
        boost: tuple[np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-k of score + boost from the model's top-k and the boosted items: an item
        outside both has k items above it that the boost can only raise."""
        items, add = boost
        keep = allowed[items]
        items, add = items[keep], add[keep]
        if not len(items):
            return top, values
        plain = ~np.isin(top, items)
        rows = np.concatenate([top[plain], items])
        scores = np.concatenate([values[plain], self.model.score_rows(query, items) + add])
        best = top_k(scores, min(k, len(rows)))
        return rows[best], scores[best]

    def candidates_allowed(self, history: np.ndarray, rows: np.ndarray, f: Filters) -> np.ndarray:
        """(len(rows),) bool: the filters of `_allowed` read for these candidate rows only
        (O(candidates), never a mask over the catalog)."""
        keep = np.ones(len(rows), dtype=bool)
        if f.include_categories:
            keep &= self.catalog.in_categories(rows, f.include_categories)
        if f.exclude_categories:
            keep &= ~self.catalog.in_categories(rows, f.exclude_categories)
        if f.recategorised is not None:  # sorted rows: a binary search per candidate
            changed, passes = f.recategorised
            at = np.minimum(np.searchsorted(changed, rows), max(len(changed) - 1, 0))
            hit = changed[at] == rows if len(changed) else np.zeros(len(rows), bool)
            keep[hit] = passes[at[hit]]
        if f.exclude_items:
            keep &= ~np.isin(rows, self.catalog.lookup(list(f.exclude_items)))
        if f.exclude_seen and len(history):
            keep &= ~np.isin(rows, history)
        if f.exclude_rows is not None and len(f.exclude_rows):
            keep &= ~np.isin(rows, f.exclude_rows)
        return keep

    def rank(self, history: np.ndarray, rows: np.ndarray, explain: bool = True) -> Result:
        """Candidate rows (distinct, 1..N) ordered by the score `recommend` ranks the catalog
        by: the student's score plus the transitions boost, or popularity for a history the
        model knows nothing of. Only these rows are gathered and scored (O(candidates x D)),
        so the order is the full-catalog order restricted to them; ties keep the given order."""
        if not len(history):
            top = rows[np.argsort(-self.popularity[rows], kind="stable")]
            return Result(self._items(top, self.popularity[top]), POPULAR, 0)
        enc = self.model.encode([history])
        scores = self.model.score_rows(enc.hidden[0], rows)
        # The lift is read at the candidates: its rows (up to 10,000) are never gathered.
        experts = [e for e in self.experts if e is not self.lift]
        if experts:
            _, boosted, boost = self._summed_boosts([history], experts)  # one history: sorted
            scores += content.values_at(boosted, boost, rows)
        if self.lift is not None:
            scores += self.lift.at(rows)
        order = np.argsort(-scores, kind="stable")
        top, values = rows[order], scores[order]
        reasons = self._reasons(enc, 0, top) if explain else None
        return Result(self._items(top, values, reasons), PERSONALIZED, len(history), enc.hidden[0])

    def _items(
        self, rows: np.ndarray, scores: np.ndarray, reasons: list[int | None] | None = None
    ) -> list[Recommendation]:
        """Recommendations of these rows, their ids decoded in one pass."""
        ids = self.catalog.item_ids
        why: list[int | None] = [None] * len(rows) if reasons is None else reasons
        names = {b: ids[b - 1] for b in set(why) if b is not None}  # a few distinct
        return [
            Recommendation(i, v, r, None if b is None else names[b], b)
            for i, r, v, b in zip(
                ids.take((rows - 1).tolist()), rows.tolist(), scores.tolist(), why, strict=True
            )
        ]

    def recommend(self, history: np.ndarray, filters: Filters | None = None) -> Result:
        return self.recommend_many([history], [filters or Filters()])[0]

    def _unit(self, rows: np.ndarray) -> np.ndarray:
        vectors = self.model.embed(rows)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)

    def _reasons(self, enc, j: int, top: np.ndarray) -> list[int | None]:
        """For each recommended row, the item in the model's history window whose student
        embedding is closest (cosine) to it: one (k x D) @ (D x L) product. Attribution by
        the attention path was tried first; the residual stream made the newest item win for
        every recommendation, which explains nothing."""
        if not len(top):
            return []
        items = enc.items[j]
        real = items != 0
        similarity = self._unit(top) @ self._unit(items).T  # (k, L)
        similarity[:, ~real] = -np.inf
        return items[np.argmax(similarity, axis=1)].tolist()  # rows of the history items

    def similar(self, item_id: str, k: int = 10) -> list[Recommendation] | None:
        """Nearest items by cosine similarity of the student's item embeddings; None if the
        item is unknown."""
        row = self.catalog.row(item_id)
        if row is None:
            return None
        return self.similar_to(self.model.embed(np.asarray([row]))[0], k, np.asarray([row]))

    def similar_to(
        self, vector: np.ndarray, k: int = 10, exclude: np.ndarray | None = None
    ) -> list[Recommendation]:
        """Nearest catalog items to a vector of the item table's space by cosine, less the
        `exclude` rows (the item itself, rows made unavailable)."""
        if not float(np.linalg.norm(vector)):  # no direction (an item with no content)
            return []
        allowed = np.ones(self.model.n_items + 1, dtype=bool)
        allowed[0] = False
        if exclude is not None and len(exclude):
            allowed[exclude] = False
        top, sims = self._rank(vector.astype(np.float32), allowed, k, cosine=True)
        return [
            Recommendation(self.catalog.item_ids[r - 1], float(s), int(r))
            for r, s in zip(top, sims, strict=True)
        ]
