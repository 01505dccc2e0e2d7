"""Write users' histories from the data into the user store: only the users whose history
changed since the last sync.

A history is the user's newest `history_length` items (item ids as strings, oldest first),
from the same cleaned interactions training reads: independent of any model. Which users
changed is told by a per-user fingerprint kept beside the data (default
<data bucket>/histories/fingerprints.npz): two sorted uint64 arrays, a hash of the user id and
a hash of the history, so the file holds no user id and the diff is vectorised
(np.searchsorted), with no per-user Python object except for the users written.

Runs in the training container after training (and as `lmrec sync-histories`), never in a
Lambda: a first sync of a large data set writes every user.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
import zipfile
from dataclasses import dataclass

import numpy as np
from lmrec import erasure, store
from lmrec.userstore import UserStore

from training.data import Interactions

log = logging.getLogger(__name__)

DEFAULT_HISTORY_LENGTH = 1000  # the seen-filter covers this many; any model window is shorter
STATE_FORMAT = 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps, as intended)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def string_hashes(ids: np.ndarray) -> np.ndarray:
    """The first 8 bytes of sha256 of each id, as uint64 (collisions among 1M users: about
    3e-8; a collision would only make two users share a change flag)."""
    digests = b"".join(hashlib.sha256(s.encode()).digest()[:8] for s in ids.tolist())
    return np.frombuffer(digests, dtype="<u8").copy()


def windows(data: Interactions, history_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's [start, end) in data.items: the newest `history_length` interactions."""
    end = data.offsets[1:]
    start = np.maximum(data.offsets[:-1], end - history_length)
    return start, end


def fingerprints(
    data: Interactions, history_length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user keys, history hashes, user rows), sorted by key. The history hash mixes each
    item's id hash with its position from the newest, summed per user: one vectorised pass
    over the interactions."""
    start, end = windows(data, history_length)
    item_hash = np.concatenate([[np.uint64(0)], string_hashes(data.item_ids)])
    n = len(data.items)
    user_of = np.repeat(np.arange(data.n_users), np.diff(data.offsets))
    from_newest = (end[user_of] - 1 - np.arange(n)).astype(np.uint64)
    with np.errstate(over="ignore"):
        values = _mix(item_hash[data.items] + (from_newest + np.uint64(1)) * _GOLDEN)
    values[np.arange(n) < start[user_of]] = 0  # outside the window
    summed = np.add.reduceat(values, data.offsets[:-1]) if n else np.zeros(0, np.uint64)
    hashes = _mix(summed ^ (end - start).astype(np.uint64))
    keys = string_hashes(data.user_ids)
    order = np.argsort(keys, kind="stable")
    return keys[order], hashes[order], order


def changed_users(
    keys: np.ndarray, hashes: np.ndarray, old_keys: np.ndarray, old_hashes: np.ndarray
) -> np.ndarray:
    """Positions (in keys) of users who are new or whose history hash differs."""
    if not len(old_keys):
        return np.arange(len(keys))
    at = np.clip(np.searchsorted(old_keys, keys), 0, len(old_keys) - 1)
    same = (old_keys[at] == keys) & (old_hashes[at] == hashes)
    return np.flatnonzero(~same)


@dataclass
class SyncState:
    keys: np.ndarray
    hashes: np.ndarray
    meta: dict


def read_state(uri: str) -> SyncState | None:
    try:
        raw = store.read_bytes(uri)
    except store.NotFound:
        return None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            state = SyncState(z["keys"].astype(np.uint64), z["hashes"].astype(np.uint64), meta)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # writes are whole (store.write_bytes): an unreadable file is someone else's, not
        # ours to overwrite
        raise store.StoreError(
            f"{uri} is not a fingerprint state written by lmrec sync-histories ({exc}); "
            "pass another --state, or remove the file to sync every user again"
        ) from None
    return state if meta.get("format") == STATE_FORMAT else None


def write_state(uri: str, state: SyncState) -> None:
    buf = io.BytesIO()
    meta = np.frombuffer(json.dumps(state.meta).encode(), dtype=np.uint8)
    np.savez_compressed(buf, keys=state.keys, hashes=state.hashes, meta=meta)
    store.write_bytes(uri, buf.getvalue())


def drop_users(state_uri: str, user_ids: list[str]) -> int:
    """Remove these users' fingerprints (the deletion job: nothing of theirs stays behind)."""
    try:
        state = read_state(state_uri)
    except store.StoreError as exc:  # not our file: it holds none of our fingerprints
        log.warning("fingerprints not dropped: %s", exc)
        return 0
    if state is None or not user_ids:
        return 0
    gone = np.isin(state.keys, string_hashes(np.asarray(user_ids, dtype=str)))
    if gone.any():
        write_state(state_uri, SyncState(state.keys[~gone], state.hashes[~gone], state.meta))
    return int(gone.sum())


def _histories(data: Interactions, users: np.ndarray, history_length: int):
    start, end = windows(data, history_length)
    for u in users.tolist():
        yield str(data.user_ids[u]), data.item_ids[data.items[start[u] : end[u]] - 1].tolist()


def _unstorable(data: Interactions, rows: np.ndarray, user_store: UserStore) -> np.ndarray:
    """Mask over rows: ids the store cannot key (DynamoDB: 1..2048 bytes of UTF-8). They
    are reported by row and size (the id itself may be huge, and is personal) and skipped."""
    bad = np.array([not user_store.holds(str(data.user_ids[u])) for u in rows.tolist()], bool)
    for u in rows[bad][:5].tolist():
        size = len(str(data.user_ids[u]).encode("utf-8", "replace"))
        log.warning(
            "history sync: skipped a user id of %d bytes (sha256 %s...): %s cannot key it",
            size,
            hashlib.sha256(str(data.user_ids[u]).encode("utf-8", "replace")).hexdigest()[:12],
            user_store.uri,
        )
    return bad


def _erased(erasure_root: str, keys: np.ndarray) -> tuple[set[str], np.ndarray]:
    """(users with a pending erasure, mask over keys of theirs)."""
    erased = {r.user_id for r in erasure.pending(erasure_root)} if erasure_root else set()
    skip = np.zeros(len(keys), dtype=bool)
    if erased:
        skip = np.isin(keys, string_hashes(np.asarray(sorted(erased), dtype=str)))
    return erased, skip


def sync(
    data: Interactions,
    user_store: UserStore,
    state_uri: str,
    history_length: int = DEFAULT_HISTORY_LENGTH,
    erasure_root: str = "",
    full: bool = False,
    chunk: int = 5000,
    save_every: float = 60.0,
) -> dict:
    """Write the histories that changed; record each written user's fingerprint (every
    `save_every` seconds and at the end, after the writes: an interrupted sync resumes
    where it stopped, and a failed write is redone next time rather than forgotten)."""
    began = time.perf_counter()
    keys, hashes, order = fingerprints(data, history_length)  # order: user row of each key
    meta = {"format": STATE_FORMAT, "store": user_store.uri, "history_length": history_length}
    old = None if full else read_state(state_uri)
    if old is not None and {k: old.meta.get(k) for k in meta} != meta:
        old = None  # another store or another length: every history must be written
    changed = changed_users(
        keys,
        hashes,
        old.keys if old else np.zeros(0, np.uint64),
        old.hashes if old else np.zeros(0, np.uint64),
    )
    # Users with a pending erasure request are never written back (they asked while this
    # data was being read); their fingerprints are dropped so the next sync is clean.
    erased, skip = _erased(erasure_root, keys)
    n_erased = int(skip.sum())
    unstorable = changed[_unstorable(data, order[changed], user_store)]
    skip[unstorable] = True
    changed = changed[~skip[changed]]
    changed = changed[np.argsort(order[changed], kind="stable")]  # data order: easy to follow
    waiting = np.zeros(len(keys), dtype=bool)  # changed, not written yet
    waiting[changed] = True
    written, saved = 0, time.perf_counter()
    for lo in range(0, len(changed), chunk):
        part = changed[lo : lo + chunk]
        written += user_store.put_histories(_histories(data, order[part], history_length))
        waiting[part] = False
        if time.perf_counter() - saved >= save_every and lo + chunk < len(changed):
            keep = ~skip & ~waiting
            write_state(state_uri, SyncState(keys[keep], hashes[keep], meta))  # progress
            saved = time.perf_counter()
    if erasure_root and written:  # a DELETE that arrived while this sync was writing
        late = {r.user_id for r in erasure.pending(erasure_root)} - erased
        for user in late:
            user_store.delete_user(user)
    meta["data_fingerprint"] = data.fingerprint
    write_state(state_uri, SyncState(keys[~skip], hashes[~skip], meta))
    seconds = time.perf_counter() - began
    summary = {
        "users": int(data.n_users),
        "changed": len(changed),
        "written": written,
        "skipped_erased": n_erased,
        "skipped_unstorable": len(unstorable),
        "first_sync": old is None,
        "seconds": round(seconds, 3),
        "store": user_store.uri,
    }
    log.info("history sync %s", summary)
    return summary
