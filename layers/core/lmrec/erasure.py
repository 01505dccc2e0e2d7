"""Erasure requests: recorded by DELETE /v1/users/{id}, carried out by the deletion job.

A request is one object, <root>/requests/<sha256(user id)>.json. While it is pending it holds
the user's id (the deletion job needs it to find the user's rows in the data); once the job
has rewritten the data it is replaced by a record of what was done that holds only the
hash. Pending records are the only objects the service writes that contain a user id.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from lmrec import store

PENDING = "pending"
DONE = "done"


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def request_uri(root: str, user_id: str) -> str:
    return f"{root.rstrip('/')}/requests/{user_hash(user_id)}.json"


@dataclass
class Request:
    uri: str
    user_id: str
    requested_at: float | None


def record(root: str, user_id: str, now: float | None = None) -> str:
    """Record (or renew) a pending request; idempotent."""
    uri = request_uri(root, user_id)
    body = {"status": PENDING, "user_id": user_id, "requested_at": now or time.time()}
    store.write_bytes(uri, json.dumps(body).encode())
    return uri


def pending(root: str) -> list[Request]:
    """Every pending request under root (an unreadable record is an error, not skipped:
    skipping it would silently leave a user's rows in the data)."""
    prefix = f"{root.rstrip('/')}/requests/"
    loc = store.parse(prefix)
    if loc.scheme == "file" and not Path(loc.key).exists():
        return []  # no request was ever recorded here
    uris = store.list_files(prefix)  # an S3 error is raised, never read as "none pending"
    found = []
    for uri in uris:
        if not uri.endswith(".json"):
            continue
        try:
            body = json.loads(store.read_bytes(uri))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise store.StoreError(f"{uri}: not a valid erasure record: {exc}") from None
        if isinstance(body, dict) and body.get("status") == PENDING:
            if not isinstance(body.get("user_id"), str):
                raise store.StoreError(f"{uri}: a pending erasure record without a user_id")
            found.append(Request(uri, body["user_id"], body.get("requested_at")))
    return found


def complete(request: Request, summary: dict) -> bool:
    """Replace the pending record by what was done, without the user's id; False (and the
    record left pending for the next run) when the user asked again while the job ran."""
    try:
        now_there = json.loads(store.read_bytes(request.uri))
    except (store.StoreError, ValueError):
        now_there = None
    if not isinstance(now_there, dict) or now_there.get("requested_at") != request.requested_at:
        return False
    body = {
        "status": DONE,
        "user_sha256": user_hash(request.user_id),
        "requested_at": request.requested_at,
        "completed_at": time.time(),
        **summary,
    }
    store.write_bytes(request.uri, json.dumps(body).encode())
    return True
