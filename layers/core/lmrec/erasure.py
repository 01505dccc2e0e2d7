"""Erasure requests: recorded by DELETE /v1/users/{id}, carried out by the deletion job.

One prefix per state, so a run reads what is pending and never the history of what is done:

  <root>/pending/<sha256(user id)>.json   {status: pending, user_id, requested_at}
  <root>/done/<sha256(user id)>.json      {status: done, user_sha256, requested_at, ...}

A pending record holds the user's id (the deletion job needs it to find the user's rows in
the data); when the job is done it writes the done record, which holds only the hash, and
deletes the pending one. Pending records are the only objects the service writes that hold
a user id. Records of the older single-prefix layout (<root>/requests/) are moved to these
prefixes by the next deletion job, so no request recorded before an upgrade is lost.
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
LEGACY = "requests"  # the single prefix of records written before the split by state


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def _dir(root: str, state: str) -> str:
    return f"{root.rstrip('/')}/{state}/"


def request_uri(root: str, user_id: str, state: str = PENDING) -> str:
    return f"{_dir(root, state)}{user_hash(user_id)}.json"


@dataclass
class Request:
    uri: str  # the pending record
    user_id: str
    requested_at: float | None


def record(root: str, user_id: str, now: float | None = None) -> str:
    """Record (or renew) a pending request; idempotent."""
    uri = request_uri(root, user_id)
    body = {"status": PENDING, "user_id": user_id, "requested_at": now or time.time()}
    store.write_bytes(uri, json.dumps(body).encode())
    return uri


def _list(root: str, state: str) -> list[str]:
    prefix = _dir(root, state)
    loc = store.parse(prefix)
    if loc.scheme == "file" and not Path(loc.key).exists():
        return []  # nothing was ever recorded here
    # an S3 error is raised, never read as "none pending"
    return [u for u in store.list_files(prefix) if u.endswith(".json")]


def _read(uri: str) -> dict:
    try:
        body = json.loads(store.read_bytes(uri))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise store.StoreError(f"{uri}: not a valid erasure record: {exc}") from None
    if not isinstance(body, dict):
        raise store.StoreError(f"{uri}: not a valid erasure record: not an object")
    return body


def pending_count(root: str) -> int:
    """How many requests wait (listing only: the retrain function's check). Records of the
    older layout count as waiting until a deletion job has moved them."""
    return len(_list(root, PENDING)) + len(_list(root, LEGACY))


def adopt_legacy(root: str) -> int:
    """Move records of the older layout to the prefix of their state (the deletion job)."""
    moved = 0
    for uri in _list(root, LEGACY):
        body = _read(uri)
        state = PENDING if body.get("status") == PENDING else DONE
        target = f"{_dir(root, state)}{uri.rsplit('/', 1)[1]}"
        try:
            store.read_bytes(target)  # a newer record there wins
        except store.NotFound:
            store.write_bytes(target, json.dumps(body).encode())
        store.delete(uri)
        moved += 1
    return moved


def pending(root: str) -> list[Request]:
    """Every pending request under root (an unreadable record is an error, not skipped:
    skipping it would silently leave a user's rows in the data). Reads only pending/."""
    found = []
    for uri in _list(root, PENDING) + _list(root, LEGACY):
        body = _read(uri)
        if body.get("status") != PENDING:
            continue  # a finished record of the older layout
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
    root = request.uri.rsplit("/", 2)[0]
    store.write_bytes(request_uri(root, request.user_id, DONE), json.dumps(body).encode())
    store.delete(request.uri)  # last: a failure before it leaves the request pending
    return True
