"""Erasure: DELETE /v1/users/{id} removes the user's history and events at once and records
the request for the deletion job, which removes the user's rows from the training data."""

from __future__ import annotations

import logging
import time
from typing import Annotated
from urllib.parse import unquote

from fastapi import APIRouter, HTTPException, Path, Request

from lmrec import erasure, store
from lmrec.api.auth import CallerDep, require_user
from lmrec.api.deps import SettingsDep, UsersDep
from lmrec.api.middleware import raw_paths
from lmrec.api.schemas import DeleteResponse, Id
from lmrec.userstore import UserStoreUnavailable

router = APIRouter(prefix="/v1/users", tags=["users"])
log = logging.getLogger(__name__)


def erase(user_id: str, users, settings) -> DeleteResponse:
    """Record the request first, then delete from the user store until the deadline: a
    DELETE that runs out of time (a user with many events, a slow table) leaves a recorded
    request, and the deletion job deletes what is left."""
    began = time.monotonic()
    root = settings.erasure_root()
    if users is None and not root:
        raise HTTPException(503, "erasure is not configured (no user store, no model store)")
    if root:
        try:
            erasure.record(root, user_id)
        except store.StoreError as exc:
            # Nothing is deleted either: without the record, the next history sync would
            # write the user's history back from the data.
            log.error("erasure request not recorded: %s", exc)  # the reply stays path-free
            raise HTTPException(
                503, "nothing was erased: the erasure request was not recorded; retry"
            ) from None
    deleted, complete = 0, True
    if users is not None:
        try:
            deleted, complete = users.delete_user_until(
                user_id, began + settings.erasure_stop_seconds()
            )
        except UserStoreUnavailable as exc:
            log.warning("user store delete failed: %s", exc)
            if not root:
                raise HTTPException(503, "nothing was erased; try again") from None
            raise HTTPException(
                503,
                "the erasure is recorded and the deletion job will carry it out, but the "
                "user store did not answer: retry to delete the history at once",
            ) from None
        if not complete:
            log.warning("erasure: user store delete left for the deletion job")
    return DeleteResponse(
        user_id=user_id, deleted=deleted, erasure_recorded=bool(root), complete=complete
    )


def _named_events(request: Request) -> bool:
    """True when the path as sent ends in a segment "events" between literal slashes:
    routing matches the decoded path, so /v1/users/bob%2Fevents (the user "bob/events") also
    lands on the older route. Where a gateway hands over the path already decoded the two
    cannot be told apart; DELETE /v1/users/{id} has no such ambiguity."""
    raw = raw_paths(request.scope)
    if not raw:
        return True
    path = raw[0].decode("latin-1") if isinstance(raw[0], bytes) else raw[0]
    # the last segment between literal slashes, then decoded: %65vents is "events" too
    return unquote(path.rstrip("/").rsplit("/", 1)[-1]) == "events"


@router.delete("/{user_id:path}/events", response_model=DeleteResponse, deprecated=True)
def delete_events(
    user_id: Annotated[Id, Path(max_length=256)],
    request: Request,
    users: UsersDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> DeleteResponse:
    """The older route, now the same full erasure as DELETE /v1/users/{user_id}: deleting
    only the events left the user's history serving personalised answers."""
    if not _named_events(request):  # the user "<id>/events", not <id>'s events
        user_id = f"{user_id}/events"
        if len(user_id) > 256:
            raise HTTPException(422, "user_id: longer than 256 characters")
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
