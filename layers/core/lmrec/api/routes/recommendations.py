"""Recommendations for a user id, a history, or both."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from lmrec.api.deps import EventsDep, RecommenderDep, SettingsDep
from lmrec.api.schemas import Id, Reason, RecommendedItem, RecommendRequest, RecommendResponse
from lmrec.events import EventStore, EventsUnavailable
from lmrec.recommend import Filters, Recommendation, Recommender
from lmrec.settings import Settings

router = APIRouter(prefix="/v1", tags=["recommendations"])


def item_out(rec: Recommender, r: Recommendation, rank: int) -> RecommendedItem:
    reason = None
    if r.reason is not None:
        row = rec.catalog.row_of[r.reason]
        reason = Reason(item_id=r.reason, title=rec.catalog.fields(row).get("title"))
    return RecommendedItem(
        item_id=r.item_id,
        score=r.score,
        rank=rank,
        attributes=rec.catalog.fields(r.row),
        reason=reason,
    )


async def recommend(
    rec: Recommender,
    events: EventStore | None,
    settings: Settings,
    user_id: str | None,
    history: list[str],
    filters: Filters,
) -> RecommendResponse:
    """Stored history (bundle) + real-time events + the request's history, then the model."""
    warnings: list[str] = []
    parts = []
    if user_id is not None:
        stored = rec.user_history(user_id)
        if stored is not None:
            parts.append(stored)
        if events is not None:
            try:
                # The one blocking call: off the event loop, so uvicorn keeps serving others.
                recent = await run_in_threadpool(
                    events.recent_items, user_id, settings.events_per_user
                )
                parts.append(rec.catalog.rows(recent)[0])
            except EventsUnavailable as exc:
                warnings.append(f"real-time events were not used: {exc}")
    known = rec.catalog.category_rows
    missing = [
        c for c in (*filters.include_categories, *filters.exclude_categories) if c not in known
    ]
    if missing:
        warnings.append(f"unknown categories ignored: {', '.join(missing[:10])}")
    rows, unknown = rec.catalog.rows(history)
    parts.append(rows)
    merged = np.concatenate(parts) if parts else np.empty(0, np.int64)
    result = rec.recommend(merged, filters)
    return RecommendResponse(
        user_id=user_id,
        model_version=rec.version,
        strategy=result.strategy,
        items=[item_out(rec, r, i + 1) for i, r in enumerate(result.items)],
        history_length=result.history_length,
        unknown_items=unknown,
        warnings=warnings,
    )


@router.post("/recommendations", response_model=RecommendResponse)
async def post_recommendations(
    body: RecommendRequest, rec: RecommenderDep, events: EventsDep, settings: SettingsDep
) -> RecommendResponse:
    filters = Filters(
        k=body.k,
        exclude_seen=body.exclude_seen,
        exclude_items=body.exclude_items,
        include_categories=body.include_categories,
        exclude_categories=body.exclude_categories,
        explain=body.explain,
    )
    return await recommend(rec, events, settings, body.user_id, body.history, filters)


@router.get("/users/{user_id:path}/recommendations", response_model=RecommendResponse)
async def get_user_recommendations(
    user_id: Annotated[Id, Path(max_length=256)],
    rec: RecommenderDep,
    events: EventsDep,
    settings: SettingsDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    explain: bool = True,
) -> RecommendResponse:
    return await recommend(rec, events, settings, user_id, [], Filters(k=k, explain=explain))
