"""Keeping a warm instance's view of the item store current, within a bound.

A request that finds the view older than `poll_seconds` starts a poll in the background
(the reply does not wait); one that finds it older than `max_stale_seconds` waits for the
poll (up to the user-store deadline), so no reply is built from a view older than that
bound however long the instance sat idle. A poll is one Query of the change log (or, at a
cold start or after a long idle, a read of every record). Lambda freezes an instance between
invocations, so polls only happen while requests come: an idle instance costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from lmrec import liveitems
from lmrec.itemstore import OVERLAP_MS, ItemRecord, ItemStore, now_ms

log = logging.getLogger(__name__)
RELOAD_AFTER_MS = 3_600_000  # an instance idle this long re-reads every record (log TTL: 1 day)


class LiveSync:
    def __init__(
        self,
        store: ItemStore,
        poll_seconds: float,
        max_stale_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.poll_seconds, self.max_stale_seconds = poll_seconds, max_stale_seconds
        self.clock = clock
        self.records: dict[str, ItemRecord] = {}
        self.generation = 0  # bumped when a poll changed something
        self.loaded = False
        self.problem: str | None = None
        self._polled_ms = 0  # wall time the last good poll started (its data is at least this new)
        self._polled_at = float("-inf")  # the same, monotonic
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._overlay: liveitems.Overlay | None = None
        self._overlay_key: tuple[str, int] | None = None
        self._vectors: dict = {}

    def poll(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # one poll at a time; the caller waits on the running one
        try:
            started_ms, started = now_ms(), self.clock()
            if not self.loaded or started_ms - self._polled_ms > RELOAD_AFTER_MS:
                fresh = self.store.all()
                changed = fresh != self.records
                self.records, self.loaded = fresh, True
            else:
                changed = self._apply(self.store.changes(self._polled_ms - OVERLAP_MS))
            if changed:
                self.generation += 1
            self._polled_ms, self._polled_at, self.problem = started_ms, started, None
        except Exception as exc:  # the view stays; replies say it may be stale
            self.problem = str(exc)[:500]
            log.warning("item store poll failed: %s", exc)
        finally:
            self._lock.release()

    def _apply(self, changes: list[ItemRecord]) -> bool:
        records, changed = dict(self.records), False  # a new dict: readers hold the old one
        for r in changes:
            old = records.get(r.item_id)
            if old != r and r.newer_than(old):
                records[r.item_id] = r
                changed = True
        self.records = records
        return changed

    def remember(self, records: list[ItemRecord]) -> None:
        """This instance's own writes, seen at once (other instances poll for them)."""
        with self._lock:
            if self._apply(records):
                self.generation += 1

    def _start(self) -> threading.Thread:
        thread = self._thread
        if thread is None or not thread.is_alive():
            thread = threading.Thread(target=self.poll, name="lmrec-items", daemon=True)
            self._thread = thread
            thread.start()
        return thread

    def start(self) -> threading.Thread:
        return self._start()

    def age(self) -> float:
        return self.clock() - self._polled_at

    def ensure_fresh(self, wait_seconds: float) -> None:
        """Poll in the background when due; wait (bounded) when the view is too old."""
        age = self.age()
        if age >= self.max_stale_seconds:
            self._start().join(wait_seconds)
        elif age >= self.poll_seconds:
            self._start()

    def stale(self) -> bool:
        return self.age() >= self.max_stale_seconds

    def overlay(self, rec) -> liveitems.Overlay:
        """The overlay of the current records for this model (rebuilt when either changed)."""
        key = (rec.version, self.generation)
        if self._overlay is None or self._overlay_key != key:
            if self._overlay is not None and self._overlay.version != rec.version:
                self._vectors = {}  # another model: another content table
            self._overlay = liveitems.build(rec, list(self.records.values()), self._vectors)
            self._overlay_key = key
        return self._overlay
