"""What is popular now (lmrec.trending): GET /v1/trending, and the cold-start answer when the
deployment chooses it (LMREC_COLD_START=trending), or under auto when the model's training
job measured it ahead (the manifest's cold_start)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request

from lmrec import trending
from lmrec.api import live as live_api
from lmrec.api.auth import CallerDep, require_user
from lmrec.api.deps import SettingsDep, StateDep, check_query, require_model
from lmrec.api.routes.recommendations import _STORE_READS, LiveDep, category_warnings, item_out
from lmrec.api.schemas import MAX_HISTORY, Category, Id, TrendingResponse
from lmrec.ivf import top_k
from lmrec.recommend import Filters, Recommendation, Recommender
from lmrec.settings import Settings
from lmrec.trending import Snapshot, TrendingCounts

router = APIRouter(prefix="/v1", tags=["trending"])
log = logging.getLogger(__name__)
PARAMETERS = {"k", "half_life_hours", "include_categories", "exclude_categories", "exclude_items"}
MIN_HALF_LIFE_HOURS = 0.1
NO_COUNTS = "no user store is set: the training data's recent popularity only, no live counts"


async def snapshot(
    counts: TrendingCounts | None, settings: Settings
) -> tuple[Snapshot | None, str | None]:
    """The live counts within the user-store deadline, or (None, why not). A read past the
    deadline goes on in its thread and fills the cache for the next request."""
    if counts is None:
        return None, NO_COUNTS
    call = asyncio.get_running_loop().run_in_executor(_STORE_READS, counts.snapshot)
    try:
        return await asyncio.wait_for(call, settings.user_store_deadline_seconds), None
    except TimeoutError:
        log.warning("trending counts did not arrive in time; answering without them")
    except Exception as exc:  # UserStoreUnavailable, botocore's many types: "not now"
        log.warning("trending counts unavailable; answering without them: %s", exc)
    return None, "the live counts were unavailable: the training data's recent popularity only"


def partial(counts: Snapshot | None) -> list[str]:
    if counts is None or counts.partial_through is None:
        return []
    at = datetime.fromtimestamp(counts.partial_through * trending.BUCKET_SECONDS, UTC)
    return [
        f"more live counters than one read takes (LMREC_TRENDING_MAX_COUNTERS): those "
        f"from {at.isoformat(timespec='seconds')} and older are partly counted"
    ]


def top(
    rec: Recommender,
    counts: Snapshot | None,
    settings: Settings,
    half_life_hours: float,
    history: np.ndarray,
    filters: Filters,
) -> list[Recommendation]:
    """The k best allowed items by trending score, the filters applied as recommendations
    apply them (Recommender._allowed: categories, exclusions, seen items)."""
    scores = trending.catalog_scores(
        counts,
        rec.catalog,
        rec.catalog.lookup,
        rec.bundle.trending_prior,
        settings.trending_prior_events,
        half_life_hours * 3600,
        time.time(),
    )
    allowed = rec._allowed(history, filters)
    rows = top_k(np.where(allowed, scores, -np.inf), min(filters.k, int(allowed.sum())))
    return rec._items(rows, scores[rows].astype(np.float32))


def _check_parameters(request: Request, settings: Settings, half_life_hours: float) -> None:
    check_query(request, PARAMETERS)
    if not MIN_HALF_LIFE_HOURS <= half_life_hours <= settings.trending_window_hours:
        raise HTTPException(
            422,
            f"half_life_hours must be from {MIN_HALF_LIFE_HOURS:g} to "
            f"{settings.trending_window_hours:g} (the window counts are kept for)",
        )


@router.get("/trending", response_model=TrendingResponse)
async def get_trending(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    caller: CallerDep,
    live: LiveDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    half_life_hours: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    include_categories: Annotated[list[Category], Query(max_length=50)] = [],  # noqa: B006
    exclude_categories: Annotated[list[Category], Query(max_length=50)] = [],  # noqa: B006
    exclude_items: Annotated[list[Id], Query(max_length=MAX_HISTORY)] = [],  # noqa: B006
) -> TrendingResponse:
    """The k items most popular now: events the API received, each weighted
    2^(-age / half_life_hours), plus the training data's recent popularity as a prior; filtered
    like recommendations (repeat a list parameter: include_categories=a&include_categories=b).
    Counts are read at most every few seconds per instance: an event counts within a minute."""
    require_user(caller, None)  # no user's data: any authenticated caller
    half_life = settings.trending_half_life_hours if half_life_hours is None else half_life_hours
    _check_parameters(request, settings, half_life)
    rec = await require_model(state)
    filters = Filters(
        k=k,
        exclude_seen=False,
        exclude_items=exclude_items,
        include_categories=include_categories,
        exclude_categories=exclude_categories,
        explain=False,
    )
    # Items made unavailable (DELETE /v1/items) are never shown, here as in recommendations
    ov, filters, live_warnings = await live_api.hiding_unavailable(live, rec, settings, filters)
    warnings = category_warnings(rec, filters, ov) + live_warnings  # a 422 before any read
    counts, warning = await snapshot(request.app.state.trending, settings)
    found = top(rec, counts, settings, half_life, np.empty(0, np.int64), filters)
    shown = live_api.changes_fields(ov)  # stored fields of new or changed items
    return TrendingResponse(
        model_version=rec.version,
        half_life_hours=half_life,
        # a catalog item changed by PUT /v1/items shows its stored fields, as elsewhere
        items=[
            item_out(rec, r, i + 1, None, live_api.attributes(rec, ov, r) if shown else None)
            for i, r in enumerate(found)
        ],
        counted_at=None
        if counts is None
        else datetime.fromtimestamp(counts.read_at, UTC).isoformat(timespec="seconds"),
        warnings=warnings + ([warning] if warning else []) + partial(counts),
        degraded=counts is None and request.app.state.trending is not None,
    )
