"""Personalized ranking: a caller's candidate items ordered for one user (Amazon Personalize's
Personalized-Ranking). The user is read as for recommendations (user id and/or history, the
stored history and events merged in), and only the candidates are scored."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from lmrec import liveitems
from lmrec.api import live as live_api
from lmrec.api.auth import CallerDep, require_user
from lmrec.api.deps import SettingsDep, StateDep, UsersDep, require_model
from lmrec.api.routes.recommendations import (
    LiveDep,
    category_warnings,
    item_out,
    reason_titles,
    user_history,
)
from lmrec.api.schemas import RankedItem, RankingRequest, RankingResponse
from lmrec.recommend import Filters, Recommendation

router = APIRouter(prefix="/v1", tags=["rankings"])


def _listed(ids: list[str]) -> str:
    """The first ids, quoted and cut short: a warning names them, it does not echo 500."""
    return ", ".join(repr(i[:64]) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")


@router.post("/rankings", response_model=RankingResponse)
async def post_rankings(
    body: RankingRequest,
    state: StateDep,
    users: UsersDep,
    settings: SettingsDep,
    caller: CallerDep,
    live: LiveDep,
) -> RankingResponse:
    """The candidates by the served model's score (the score recommendations rank by), each
    with its reason; candidates the filters remove are left out and named; ids the catalog
    does not hold come last, in the order given, with no score."""
    require_user(caller, body.user_id)
    rec = await require_model(state)
    filters = Filters(
        exclude_seen=body.exclude_seen,
        exclude_items=body.exclude_items,
        include_categories=body.include_categories,
        exclude_categories=body.exclude_categories,
    )
    ov, filters, live_warnings = await live_api.hiding_unavailable(live, rec, settings, filters)
    warnings = category_warnings(rec, filters, ov)  # a 422 before any user-store read
    merged = await user_history(rec, users, settings, body.user_id, body.history)
    rows = rec.catalog.lookup(body.candidates)
    known = rows != 0
    keep = np.zeros(len(rows), bool)
    keep[known] = rec.candidates_allowed(merged.rows, rows[known], filters)
    new, new_dropped = _new_candidates(ov, body.candidates, known, filters, merged.ids)
    unknown = [
        body.candidates[i]
        for i in np.flatnonzero(~known).tolist()
        if body.candidates[i] not in new and body.candidates[i] not in new_dropped
    ]
    dropped = [body.candidates[i] for i in np.flatnonzero(known & ~keep).tolist()]
    dropped += new_dropped
    result = rec.rank(merged.rows, rows[keep], body.explain)
    items = _with_new(result.items, ov, new, result.query)
    titles = reason_titles(rec, [r for r in items if r.row])
    fields = (
        [live_api.attributes(rec, ov, r) for r in items] if live_api.changes_fields(ov) else None
    )
    if fields is None:
        fields = rec.catalog.fields_many([r.row for r in items])
    ranked: list[RankedItem] = [
        item_out(rec, r, i + 1, titles, a)
        for i, (r, a) in enumerate(zip(items, fields, strict=True))
    ]
    ranked += [
        RankedItem(item_id=c, score=None, rank=len(ranked) + j + 1) for j, c in enumerate(unknown)
    ]
    if dropped:
        warnings.append(f"candidates removed by the filters ({len(dropped)}): {_listed(dropped)}")
    if unknown:
        warnings.append(
            f"candidates not in the catalog of model {rec.version}, ranked last "
            f"({len(unknown)}): {_listed(unknown)}"
        )
    return RankingResponse(
        user_id=body.user_id,
        model_version=rec.version,
        strategy=result.strategy,
        items=ranked,
        history_length=result.history_length,
        unknown_items=merged.unknown,
        unknown_candidates=unknown,
        filtered_candidates=dropped,
        warnings=warnings + merged.warnings + live_warnings,
        degraded=merged.degraded,
    )


def _new_candidates(ov, candidates, known, filters, seen) -> tuple[list[str], list[str]]:
    """Candidates that are items added after the model: (scorable, removed). Removed: made
    unavailable, not scored (no content part), or filtered out."""
    if ov is None or not len(ov):
        return [], []
    mask = liveitems.allowed(ov, filters, set(seen))
    new: list[str] = []
    dropped: list[str] = []
    for c, k in zip(candidates, known.tolist(), strict=True):
        i = None if k else ov.index.get(c)
        if i is not None:
            (new if mask[i] else dropped).append(c)
    return new, dropped


def _with_new(items: list[Recommendation], ov, new: list[str], query) -> list[Recommendation]:
    """The model's ranking with the new candidates placed by score (0 with no history: a new
    item has no popularity)."""
    if not new or ov is None:
        return items
    at = np.asarray([ov.index[c] for c in new])
    assert ov.vectors is not None  # allowed() passes only scored items
    values = ov.vectors[at] @ query if query is not None else np.zeros(len(at), np.float32)
    extra = [Recommendation(c, float(v), 0) for c, v in zip(new, values.tolist(), strict=True)]
    return sorted(items + extra, key=lambda r: -r.score)
