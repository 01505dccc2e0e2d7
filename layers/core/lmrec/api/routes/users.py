"""Erasure: DELETE /v1/users/{id} removes the user's history and events at once and records
the request for the deletion job, which removes the user's rows from the training data."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from lmrec import erasure, store
from lmrec.api.auth import CallerDep, require_user
from lmrec.api.deps import SettingsDep, UsersDep
from lmrec.api.schemas import DeleteResponse, Id
from lmrec.events import EventsUnavailable

router = APIRouter(prefix="/v1/users", tags=["users"])
log = logging.getLogger(__name__)


def erase(user_id: str, users, settings) -> DeleteResponse:
    root = settings.erasure_root()
    if users is None and not root:
        raise HTTPException(503, "erasure is not configured (no user store, no model store)")
    deleted = 0
    if users is not None:
        try:  # first, so the very next request already sees an unknown user
            deleted = users.delete_user(user_id)
        except EventsUnavailable as exc:
            log.warning("user store delete failed: %s", exc)
            raise HTTPException(503, "nothing was erased; try again") from None
    recorded = False
    if root:
        try:
            erasure.record(root, user_id)
            recorded = True
        except store.StoreError as exc:
            log.error("erasure request not recorded: %s", exc)  # the reply stays path-free
            raise HTTPException(
                503,
                "history and events were deleted, but the erasure request for the training "
                "data was not recorded; retry",
            ) from None
    return DeleteResponse(user_id=user_id, deleted=deleted, erasure_recorded=recorded)


@router.delete("/{user_id:path}/events", response_model=DeleteResponse, deprecated=True)
def delete_events(
    user_id: Annotated[Id, Path(max_length=256)],
    users: UsersDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> DeleteResponse:
    """The older route, now the same full erasure as DELETE /v1/users/{user_id}: deleting
    only the events left the user's history serving personalised answers."""
    require_user(caller, user_id)  # a user may erase themselves; a backend anyone
    return erase(user_id, users, settings)


@router.delete("/{user_id:path}", response_model=DeleteResponse)
def delete_user(
    user_id: Annotated[Id, Path(max_length=256)],
    users: UsersDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> DeleteResponse:
    require_user(caller, user_id)  # a user may erase themselves; a backend anyone
    return erase(user_id, users, settings)
