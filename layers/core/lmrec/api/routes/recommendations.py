"""Recommendations for a user id, a history, or both."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request

from lmrec import liveitems
from lmrec.api import live as live_api
from lmrec.api.auth import CallerDep, require_user
from lmrec.api.deps import (
    SettingsDep,
    StateDep,
    TrendingDep,
    UsersDep,
    check_query,
    require_model,
)
from lmrec.api.schemas import Id, Reason, RecommendedItem, RecommendRequest, RecommendResponse
from lmrec.livesync import LiveSync
from lmrec.recommend import PERSONALIZED, POPULAR, Filters, Recommendation, Recommender, Result
from lmrec.settings import Settings
from lmrec.trending import TrendingCounts
from lmrec.userstore import UserStore, UserStoreUnavailable

router = APIRouter(prefix="/v1", tags=["recommendations"])
log = logging.getLogger(__name__)

# The user store is read on threads of our own, not starlette's pool: a call past its
# deadline is abandoned (the request answers without it) while its thread runs out its
# botocore budget; anyio's pool would make the request wait for that thread.
_STORE_READS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lmrec-user-store")


def exclude_seen(asked: bool | None, deployment: bool | None, rec: Recommender) -> bool:
    """The request's choice, else the deployment's (LMREC_EXCLUDE_SEEN), else the model's
    (what its data taught: lmrec.bundle.default_exclude_seen)."""
    if asked is not None:
        return asked
    return rec.default_exclude_seen if deployment is None else deployment


def reason_titles(rec: Recommender, found: list[Recommendation]) -> dict[int, str | None]:
    """Each reason's title, decoded once per distinct reason (k items often share a few):
    at k=100 the per-item id lookups and decodes took about as long as the model."""
    rows = {r.reason_row for r in found if r.reason_row is not None}
    return {row: _text(rec.catalog.fields(row).get("title")) for row in rows}


def _text(value: object) -> str | None:
    # A catalog of codes has numeric titles (pandas reads "1984" as 1984): still a title.
    return None if value is None else str(value)


def item_out(
    rec: Recommender,
    r: Recommendation,
    rank: int,
    titles: dict[int, str | None] | None = None,
    attributes: dict | None = None,
) -> RecommendedItem:
    reason = None
    if r.reason is not None:
        row = r.reason_row
        if titles is None or row not in titles:
            titles = reason_titles(rec, [r])
        reason = Reason(item_id=r.reason, title=titles.get(row) if row is not None else None)
    return RecommendedItem(
        item_id=r.item_id,
        score=r.score,
        rank=rank,
        attributes=rec.catalog.fields(r.row) if attributes is None else attributes,
        reason=reason,
    )


async def stored_items(
    users: UserStore, user_id: str, settings: Settings
) -> tuple[list[str] | None, str | None]:
    """The user's newest stored items within the user-store deadline: (items, None), or
    (None, warning) when the store failed or did not answer in time."""
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(_STORE_READS, users.recent, user_id, settings.events_per_user)
    try:
        stored = await asyncio.wait_for(call, settings.user_store_deadline_seconds)
        return stored.items(), None
    except TimeoutError:
        log.warning(
            "user store did not answer within %.2f s; answering without it",
            settings.user_store_deadline_seconds,
        )
        return None, "the user's stored history did not arrive in time and was not used"
    except UserStoreUnavailable as exc:
        log.warning("user store failed; answering without it: %s", exc)
        return None, "the user's stored history was unavailable and was not used"
    except Exception:  # botocore raises many types (e.g. ReadTimeoutError): all mean "not now"
        log.exception("user store call failed; answering without it")
        return None, "the user's stored history was unavailable and was not used"


NO_USER_STORE = (
    "no user store is set, so this user's stored history was not read (set "
    "LMREC_USER_STORE, or lmrec serve --user-store)"
)


def unknown_ids_warning(rec: Recommender, in_request: int, stored: int) -> str:
    """Why a reply with ids to go on is the popular fallback: none of them is the model's."""
    whose = []
    if in_request:
        whose.append(f"the request's {in_request} history ids (see unknown_items)")
    if stored:
        whose.append(f"the user's {stored} stored items")
    return (
        f"popular items: none of {' or '.join(whose)} is in the catalog of model "
        f"{rec.version}; ids must be item_id values of the data it was trained on"
    )


def _listed(names: list[str]) -> str:
    return ", ".join(names[:10])[:500]


def category_warnings(
    rec: Recommender, filters: Filters, ov: liveitems.Overlay | None = None
) -> list[str]:
    """What the category filters did with names neither the model's catalog nor an item
    stored since (new or changed, `ov`) has. An unknown exclude category excludes nothing
    (ignored); an unknown include category matches no item, so an include filter of only
    unknown names could answer nothing at all: 422 instead."""

    def known(name: str) -> bool:
        return rec.catalog.has_category(name) or liveitems.knows_category(ov, name)

    include = [c for c in filters.include_categories if not known(c)]
    exclude = [c for c in filters.exclude_categories if not known(c)]
    if include and len(include) == len(filters.include_categories):
        raise HTTPException(
            422,
            f"include_categories: none is in the catalog of model {rec.version}: "
            f"{_listed(include)}",
        )
    warnings = []
    if include:
        warnings.append(f"unknown include categories match no items: {_listed(include)}")
    if exclude:
        warnings.append(f"unknown exclude categories ignored: {_listed(exclude)}")
    return warnings


@dataclass
class UserHistory:
    rows: np.ndarray  # the model's rows: stored history + events, then the request's history
    unknown: list[str]  # request history ids the catalog does not hold
    warnings: list[str]
    degraded: bool  # the user store did not answer in time
    stored: int = 0  # stored items read for the user (known to the model or not)
    ids: list[str] = dataclasses.field(default_factory=list)  # every history id, as given


async def user_history(
    rec: Recommender,
    users: UserStore | None,
    settings: Settings,
    user_id: str | None,
    history: list[str],
) -> UserHistory:
    """Stored history + real-time events (one user-store query) + the request's history, as
    the model's rows. Stored ids the live model does not know are skipped."""
    parts, warnings = [], []
    degraded = False
    stored: list[str] = []
    if user_id is not None and users is None:
        warnings.append(NO_USER_STORE)
    if user_id is not None and users is not None:
        # One query: the history from the data and the newest real-time events together.
        recent, warning = await stored_items(users, user_id, settings)
        if recent is not None:
            stored = recent
            parts.append(rec.catalog.rows(recent)[0])
        else:
            degraded = True
            warnings.append(warning or "")
    rows, unknown = rec.catalog.rows(history)
    parts.append(rows)
    return UserHistory(
        np.concatenate(parts), unknown, warnings, degraded, len(stored), [*stored, *history]
    )


def explore_of(settings: Settings, share: float | None, max_age_hours: float | None):
    """The request's exploration, else the deployment's (LMREC_EXPLORE_*)."""
    share = settings.explore_share if share is None else share
    hours = settings.explore_max_age_hours if max_age_hours is None else max_age_hours
    return liveitems.Explore(share, hours * 3600.0) if share > 0 else None


TRENDING = "trending"


async def cold_start(
    rec: Recommender,
    result: Result,
    counts: TrendingCounts | None,
    settings: Settings,
    history: np.ndarray,
    filters: Filters,
) -> tuple[Result, list[str]]:
    """The answer for no usable history: all-time popularity (the model's), or what is
    popular now when the deployment says so (LMREC_COLD_START=trending, or auto and the
    model's job measured it ahead on its data). Without live counts (no user store, or a
    read that failed) trending answers with its prior, the data's recent popularity, as
    GET /v1/trending does; a failed read says so."""
    mode = rec.default_cold_start if settings.cold_start == "auto" else settings.cold_start
    if result.strategy != POPULAR or mode != TRENDING:
        return result, []
    from lmrec.api.routes import trending  # it imports this module

    snapshot, warning = await trending.snapshot(counts, settings)
    found = trending.top(
        rec, snapshot, settings, settings.trending_half_life_hours, history, filters
    )
    failed = snapshot is None and counts is not None
    return Result(found, TRENDING, 0), [warning] if failed and warning else []


async def recommend(
    rec: Recommender,
    users: UserStore | None,
    settings: Settings,
    user_id: str | None,
    history: list[str],
    filters: Filters,
    counts: TrendingCounts | None = None,
    live: LiveSync | None = None,
    explore: liveitems.Explore | None = None,
) -> RecommendResponse:
    """The user's history (user_history), then the model (or the cold-start answer),
    then the items added since (lmrec.liveitems) merged into its top-k."""
    ov, filters, live_warnings = await live_api.hiding_unavailable(live, rec, settings, filters)
    warnings = category_warnings(rec, filters, ov)  # a 422 before any user-store read
    merged = await user_history(rec, users, settings, user_id, history)
    result = rec.recommend(merged.rows, filters)
    result, cold = await cold_start(rec, result, counts, settings, merged.rows, filters)
    warnings += cold
    items = result.items
    if ov is not None and len(ov) and result.query is not None:
        mask = liveitems.allowed(ov, filters, set(merged.ids))
        items = liveitems.merge(items, ov, result.query, mask, filters.k, explore, time.time())
    if result.strategy != PERSONALIZED and (merged.unknown or merged.stored):
        warnings.append(unknown_ids_warning(rec, len(merged.unknown), merged.stored))
    titles = reason_titles(rec, items)
    shown = live_api.changes_fields(ov)  # stored fields of new or changed items
    return RecommendResponse(
        user_id=user_id,
        model_version=rec.version,
        strategy=result.strategy,
        items=[
            item_out(rec, r, i + 1, titles, live_api.attributes(rec, ov, r) if shown else None)
            for i, r in enumerate(items)
        ],
        history_length=result.history_length,
        unknown_items=merged.unknown,
        warnings=warnings + merged.warnings + live_warnings,
        degraded=merged.degraded,
    )


LiveDep = Annotated[LiveSync | None, Depends(live_api.get_live)]


@router.post("/recommendations", response_model=RecommendResponse)
async def post_recommendations(
    body: RecommendRequest,
    state: StateDep,
    users: UsersDep,
    settings: SettingsDep,
    caller: CallerDep,
    counts: TrendingDep,
    live: LiveDep,
) -> RecommendResponse:
    require_user(caller, body.user_id)
    rec = await require_model(state)
    filters = Filters(
        k=body.k,
        exclude_seen=exclude_seen(body.exclude_seen, settings.exclude_seen, rec),
        exclude_items=body.exclude_items,
        include_categories=body.include_categories,
        exclude_categories=body.exclude_categories,
        explain=body.explain,
    )
    explore = explore_of(settings, body.explore_share, body.explore_max_age_hours)
    return await recommend(
        rec, users, settings, body.user_id, body.history, filters, counts, live, explore
    )


@router.get("/users/{user_id:path}/recommendations", response_model=RecommendResponse)
async def get_user_recommendations(
    user_id: Annotated[Id, Path(max_length=256)],
    request: Request,
    state: StateDep,
    users: UsersDep,
    settings: SettingsDep,
    caller: CallerDep,
    counts: TrendingDep,
    live: LiveDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
    explain: bool = True,
) -> RecommendResponse:
    check_query(request, {"k", "explain"})
    require_user(caller, user_id)
    rec = await require_model(state)
    filters = Filters(
        k=k, explain=explain, exclude_seen=exclude_seen(None, settings.exclude_seen, rec)
    )
    explore = explore_of(settings, None, None)
    return await recommend(rec, users, settings, user_id, [], filters, counts, live, explore)
