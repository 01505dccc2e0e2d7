"""Real-time events: recorded in DynamoDB, used by the user's next recommendation."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from lmrec.api.auth import CallerDep, require_user
from lmrec.api.deps import EventsDep
from lmrec.api.schemas import DeleteResponse, EventsRequest, EventsResponse, Id
from lmrec.events import Event, EventStore, EventsUnavailable

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger(__name__)


def _require(events: EventStore | None) -> EventStore:
    if events is None:
        raise HTTPException(503, "real-time events are disabled (LMREC_EVENTS_TABLE is empty)")
    return events


@router.post("/events", response_model=EventsResponse, status_code=202)
def post_events(
    body: EventsRequest, events: EventsDep, request: Request, caller: CallerDep
) -> EventsResponse:
    for e in body.events:
        require_user(caller, e.user_id)
    store = _require(events)
    now = time.time()
    batch = [
        Event(e.user_id, e.item_id, e.timestamp if e.timestamp is not None else now, e.event_type)
        for e in body.events
    ]
    try:
        recorded = store.put(batch)
    except EventsUnavailable as exc:
        log.warning("events were not recorded: %s", exc)
        raise HTTPException(503, "events were not recorded; try again") from None
    rec = request.app.state.model_state.recommender
    unknown = rec.catalog.rows([e.item_id for e in batch])[1] if rec else []
    return EventsResponse(recorded=recorded, unknown_items=unknown)


@router.delete("/users/{user_id:path}/events", response_model=DeleteResponse)
def delete_events(
    user_id: Annotated[Id, Path(max_length=256)], events: EventsDep, caller: CallerDep
) -> DeleteResponse:
    require_user(caller, user_id)
    try:
        deleted = _require(events).delete_user(user_id)
    except EventsUnavailable as exc:
        log.warning("events were not deleted: %s", exc)
        raise HTTPException(503, "events were not deleted; try again") from None
    return DeleteResponse(user_id=user_id, deleted=deleted)
