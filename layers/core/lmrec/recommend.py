"""Recommendations from a verified bundle: encode a history, score the catalog, filter, top-k,
explain; similar items; the popular fallback for users with no usable history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lmrec import bundle as bundle_mod
from lmrec.student import NumpySASRec

PERSONALIZED = "personalized"
POPULAR = "popular"


@dataclass
class Recommendation:
    item_id: str
    score: float
    row: int  # internal item row, for callers that look up catalog fields
    reason: str | None = None  # the history item that contributed most


@dataclass
class Result:
    items: list[Recommendation]
    strategy: str  # PERSONALIZED or POPULAR
    history_length: int = 0


@dataclass
class Filters:
    k: int = 10
    exclude_seen: bool = True
    exclude_items: Sequence[str] = ()
    include_categories: Sequence[str] = ()
    exclude_categories: Sequence[str] = ()
    explain: bool = True


@dataclass
class Catalog:
    """Item id <-> row lookups, display columns and category masks, built once at load."""

    item_ids: np.ndarray
    columns: dict[str, list]
    category_column: str | None
    row_of: dict[str, int] = field(init=False)
    category_rows: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.row_of = {item: i + 1 for i, item in enumerate(self.item_ids.tolist())}
        groups: dict[str, list[int]] = {}
        if self.category_column:
            for i, cats in enumerate(self.columns.get(self.category_column, [])):
                for cat in cats or ():
                    groups.setdefault(cat, []).append(i + 1)
        self.category_rows = {c: np.asarray(r, dtype=np.int64) for c, r in groups.items()}

    def rows(self, item_ids: Iterable[str]) -> tuple[np.ndarray, list[str]]:
        """Known rows (in order) and the ids that are not in the catalog."""
        rows, unknown = [], []
        for item in item_ids:
            row = self.row_of.get(item)
            if row is None:
                unknown.append(item)
            else:
                rows.append(row)
        return np.asarray(rows, dtype=np.int64), unknown

    def fields(self, row: int) -> dict:
        return {name: values[row - 1] for name, values in self.columns.items()}


class Recommender:
    def __init__(self, loaded: bundle_mod.Bundle):
        self.bundle = loaded
        self.model = NumpySASRec(loaded.weights, loaded.config)
        self.catalog = Catalog(
            loaded.item_ids,
            loaded.catalog,
            loaded.manifest.get("catalog", {}).get("category_column"),
        )
        self.user_row = {u: i for i, u in enumerate(loaded.user_ids.tolist())}
        norms = np.linalg.norm(self.model.items, axis=1, keepdims=True)
        self._unit_items = self.model.items / np.maximum(norms, 1e-12)  # for similar items
        self.popularity = loaded.popularity.copy()
        self.popularity[0] = -np.inf

    @classmethod
    def load(cls, uri: str, cache_dir: str | None = None) -> Recommender:
        return cls(bundle_mod.load(uri, cache_dir))

    @property
    def version(self) -> str:
        return self.bundle.version

    def user_history(self, user_id: str) -> np.ndarray | None:
        """The user's stored history (item rows, oldest first), or None for an unknown user."""
        row = self.user_row.get(user_id)
        if row is None:
            return None
        off = self.bundle.user_offsets
        return self.bundle.user_items[off[row] : off[row + 1]].astype(np.int64)

    def _allowed(self, history: np.ndarray, f: Filters) -> np.ndarray:
        allowed = np.ones(self.model.n_items + 1, dtype=bool)
        allowed[0] = False
        if f.include_categories:
            wanted = np.zeros_like(allowed)
            for cat in f.include_categories:
                wanted[self.catalog.category_rows.get(cat, np.empty(0, np.int64))] = True
            allowed &= wanted
        for cat in f.exclude_categories:
            allowed[self.catalog.category_rows.get(cat, np.empty(0, np.int64))] = False
        if f.exclude_items:
            allowed[self.catalog.rows(f.exclude_items)[0]] = False
        if f.exclude_seen and len(history):
            allowed[history] = False
        return allowed

    @staticmethod
    def _top(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
        scores = np.where(allowed, scores, -np.inf)
        n = int(allowed.sum())
        k = min(k, n)
        if k == 0:
            return np.empty(0, dtype=np.int64)
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top], kind="stable")]

    def recommend_many(self, histories: list[np.ndarray], filters: list[Filters]) -> list[Result]:
        """One encoder pass for the whole batch; filters and top-k per request."""
        results: list[Result | None] = [None] * len(histories)
        warm = [i for i, h in enumerate(histories) if len(h)]
        if warm:
            enc = self.model.encode([histories[i] for i in warm])
            scores = self.model.score(enc.hidden)
            for j, i in enumerate(warm):
                f, hist = filters[i], histories[i]
                top = self._top(scores[j], self._allowed(hist, f), f.k)
                reasons = self._reasons(enc, j, top) if f.explain else [None] * len(top)
                results[i] = Result(
                    [
                        Recommendation(
                            self.catalog.item_ids[r - 1], float(scores[j, r]), int(r), reason
                        )
                        for r, reason in zip(top, reasons, strict=True)
                    ],
                    PERSONALIZED,
                    len(hist),
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

    def recommend(self, history: np.ndarray, filters: Filters | None = None) -> Result:
        return self.recommend_many([history], [filters or Filters()])[0]

    def _reasons(self, enc, j: int, top: np.ndarray) -> list[str | None]:
        """For each recommended row, the item in the model's history window whose student
        embedding is closest (cosine) to it: one (k x D) @ (D x L) product. Attribution by
        the attention path was tried first; the residual stream made the newest item win for
        every recommendation, which explains nothing."""
        if not len(top):
            return []
        items = enc.items[j]
        real = items != 0
        similarity = self._unit_items[top] @ self._unit_items[items].T  # (k, L)
        similarity[:, ~real] = -np.inf
        best = items[np.argmax(similarity, axis=1)]
        return [self.catalog.item_ids[b - 1] for b in best]

    def similar(self, item_id: str, k: int = 10) -> list[Recommendation] | None:
        """Nearest items by cosine similarity of the student's item embeddings; None if the
        item is unknown."""
        row = self.catalog.row_of.get(item_id)
        if row is None:
            return None
        sims = self._unit_items @ self._unit_items[row]
        allowed = np.ones_like(sims, dtype=bool)
        allowed[[0, row]] = False
        top = self._top(sims, allowed, k)
        return [Recommendation(self.catalog.item_ids[r - 1], float(sims[r]), int(r)) for r in top]
