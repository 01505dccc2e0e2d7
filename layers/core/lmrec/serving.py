"""The model a server is using: loaded at start, refreshed from the production pointer every
`refresh_seconds`, swapped only for a bundle that verifies and answers a smoke request
(lmrec.smoke). It never raises to its caller: a failure keeps the loaded model serving and
is reported by health().

Loads run on a thread, so a caller can wait for one with a bound (a hanging S3 at cold start
must not hold the function's init for minutes) and a later request can start another."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from lmrec import bundle
from lmrec.bundle import BundleError
from lmrec.recommend import Recommender
from lmrec.redact import redact
from lmrec.registry import PointerError, read_pointer
from lmrec.settings import ApiSettings
from lmrec.smoke import check_serves
from lmrec.store import StoreError

log = logging.getLogger(__name__)
NO_MODEL_RETRY_SECONDS = 5.0


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


class ModelState:
    def __init__(self, settings: ApiSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.recommender: Recommender | None = None
        self.problem: str | None = None  # why the last load/refresh failed, if it did
        self.last_check = float("-inf")
        self.loaded_at: float | None = None  # unix seconds
        self.checked_at: float | None = None  # unix seconds of the last finished check
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        """Check the pointer now; load and swap in a new version if it verifies and answers."""
        if not self._lock.acquire(blocking=False):
            return  # another thread is refreshing; keep serving what is loaded
        try:
            self.last_check = self.clock()
            self._refresh()
        except (PointerError, BundleError, StoreError) as exc:
            self.problem = str(exc)
            log.warning("model refresh failed, keeping %s: %s", self.version, exc)
        except Exception as exc:  # never let a refresh take the server down
            self.problem = f"unexpected {type(exc).__name__}: {exc}"
            log.exception("model refresh failed")
        finally:
            self.checked_at = time.time()
            self._lock.release()

    def _refresh(self) -> None:
        if not self.settings.store_uri:
            self.problem = "no model store configured (LMREC_STORE_URI is empty)"
            return
        pointer = read_pointer(self.settings.pointer_uri())
        current = self.recommender
        if current is not None and current.version == pointer.model_version:
            self.problem = None
            return
        # Verified, built once and smoke-tested (lmrec.smoke): only a bundle that answers.
        fresh = check_serves(bundle.load(pointer.bundle_uri, self.settings.cache_dir))
        if fresh.version != pointer.model_version:
            raise BundleError(
                f"{pointer.bundle_uri} holds version {fresh.version}, the "
                f"pointer names {pointer.model_version}"
            )
        self.recommender, self.problem, self.loaded_at = fresh, None, time.time()
        log.info("serving model %s", fresh.version)

    def start_refresh(self) -> threading.Thread:
        """A refresh on its own thread (or the one already running)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            self.last_check = self.clock()  # one refresh per interval, not one per request
            thread = threading.Thread(target=self.refresh, name="lmrec-refresh", daemon=True)
            self._thread = thread
            thread.start()
        return thread

    def wait_for_model(self, timeout: float) -> bool:
        """Start a refresh (or join the running one) and wait at most `timeout` seconds;
        True when a model is loaded by then. A load still running goes on afterwards."""
        self.start_refresh().join(timeout)
        return self.recommender is not None

    def refresh_due(self) -> bool:
        interval = self.settings.refresh_seconds
        if self.recommender is None:  # nothing to serve: try again sooner
            interval = min(interval, NO_MODEL_RETRY_SECONDS)
        return self.clock() - self.last_check >= interval

    def refresh_in_background(self) -> None:
        """Check the pointer without holding up the request that noticed it was due: the
        loaded model answers meanwhile."""
        self.start_refresh()

    @property
    def version(self) -> str | None:
        return self.recommender.version if self.recommender else None

    def public_problem(self) -> str | None:
        """The last failure, as a caller may read it (no store paths or endpoints)."""
        return redact(self.problem) if self.problem else None

    def health(self) -> dict:
        if self.recommender is None:
            status = "unavailable"
        elif self.problem:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "model_version": self.version,
            "loaded_at": _iso(self.loaded_at),
            "checked_at": _iso(self.checked_at),
            "reason": self.public_problem(),
        }
