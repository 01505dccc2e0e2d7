"""Real-time events: recorded in the user store (with the user's per-item counts), used by
the user's next recommendation, and counted as what is popular now (lmrec.trending)."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, HTTPException, Request

from lmrec.api.auth import CallerDep, require_user
from lmrec.api.deps import SettingsDep, UsersDep
from lmrec.api.schemas import EventsRequest, EventsResponse
from lmrec.event_writes import Trending
from lmrec.events import Event
from lmrec.userstore import UserStore, UserStoreUnavailable

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger(__name__)


def require(users: UserStore | None) -> UserStore:
    if users is None:
        raise HTTPException(
            503, "real-time events are disabled (no user store: LMREC_USER_STORE is empty)"
        )
    return users


@router.post("/events", response_model=EventsResponse, status_code=202)
def post_events(
    body: EventsRequest,
    users: UsersDep,
    settings: SettingsDep,
    request: Request,
    caller: CallerDep,
) -> EventsResponse:
    for e in body.events:
        require_user(caller, e.user_id)
    store = require(users)
    now = time.time()
    batch = [
        Event(e.user_id, e.item_id, e.timestamp if e.timestamp is not None else now, e.event_type)
        for e in body.events
    ]
    # stored, counted for the user and counted as trending together: once per event
    trend = Trending(now, settings.trending_window_hours * 3600)
    try:
        recorded = store.put_events(batch, settings.events_ttl_days * 86400, trend)
    except UserStoreUnavailable as exc:
        log.warning("events were not recorded: %s", exc)
        raise HTTPException(503, "events were not recorded; try again") from None
    rec = request.app.state.model_state.recommender
    unknown = rec.catalog.rows([e.item_id for e in batch])[1] if rec else []
    return EventsResponse(recorded=recorded, unknown_items=unknown)
