"""The model a server is using: loaded at start, refreshed from the production pointer every
`refresh_seconds`, swapped only for a bundle that verifies. It never raises to its caller: a
failure keeps the loaded model serving and is reported by health()."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from lmrec.bundle import BundleError
from lmrec.recommend import Recommender
from lmrec.registry import PointerError, read_pointer
from lmrec.settings import Settings

log = logging.getLogger(__name__)


class ModelState:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.clock = clock
        self.recommender: Recommender | None = None
        self.problem: str | None = None  # why the last load/refresh failed, if it did
        self.last_check = float("-inf")
        self.loaded_at: float | None = None
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Check the pointer now; load and swap in a new version if it verifies."""
        if not self._lock.acquire(blocking=False):
            return  # another request is refreshing; keep serving what is loaded
        try:
            self.last_check = self.clock()
            if not self.settings.store_uri:
                self.problem = "no model store configured (LMREC_STORE_URI is empty)"
                return
            pointer = read_pointer(self.settings.pointer_uri())
            current = self.recommender
            if current is not None and current.version == pointer.model_version:
                self.problem = None
                return
            fresh = Recommender.load(pointer.bundle_uri, self.settings.cache_dir)
            if fresh.version != pointer.model_version:
                raise BundleError(
                    f"{pointer.bundle_uri} holds version {fresh.version}, the "
                    f"pointer names {pointer.model_version}"
                )
            self.recommender, self.problem, self.loaded_at = fresh, None, time.time()
            log.info("serving model %s", fresh.version)
        except (PointerError, BundleError) as exc:
            self.problem = str(exc)
            log.warning("model refresh failed, keeping %s: %s", self.version, exc)
        except Exception as exc:  # never let a refresh take the server down
            self.problem = f"unexpected {type(exc).__name__}: {exc}"
            log.exception("model refresh failed")
        finally:
            self._lock.release()

    def refresh_due(self) -> bool:
        return self.clock() - self.last_check >= self.settings.refresh_seconds

    def refresh_in_background(self) -> None:
        """Check the pointer without holding up the request that noticed it was due: the
        loaded model answers meanwhile (with no model yet there is nothing to wait for)."""
        self.last_check = self.clock()  # one refresh per interval, not one per request
        threading.Thread(target=self.refresh, name="lmrec-refresh", daemon=True).start()

    @property
    def version(self) -> str | None:
        return self.recommender.version if self.recommender else None

    def health(self) -> dict:
        if self.recommender is None:
            status = "unavailable"
        elif self.problem:
            status = "degraded"
        else:
            status = "ok"
        return {"status": status, "model_version": self.version, "reason": self.problem}
