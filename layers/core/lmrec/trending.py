"""What is popular now: decayed counts of the events the API receives, with the training
data's recent popularity as the prior.

Writing (lmrec.userstore, on each event post): ONE request adds the post's events to
counters keyed (shard, 5-minute bucket of arrival, item), in the user store's table. The
shard is drawn per post from SHARDS partitions, so no partition takes more than 1/SHARDS
of the event rate (DynamoDB: 1,000 WCU/s per partition). Each counter expires (TTL) one
window after its bucket closes.

Reading (GET /v1/trending, and the cold-start answer when LMREC_COLD_START=trending, or auto
and the model's manifest chose it): the
counters of the window, merged over shards, each bucket weighted 2^(-age / half-life).
A bucket is read again until it has been closed SETTLE_SECONDS (writes in flight), after
that it never changes and each warm instance keeps it; so a refresh (every
trending_cache_seconds) reads only the newest buckets, SHARDS Queries.

score(item) = sum over buckets of count * 2^(-age / half_life)
              + prior_events * prior(item) / sum(prior)
The prior: the training data weighs as much as `prior_events` fresh events spread by its
recent popularity (the bundle's recent_popularity.npy: counts decayed by age from the data's
newest row, the estimator the job's cold-start choice measured, training/cold_start.py; a
bundle from before it: all-time counts), so a deployment that has received no events yet
answers with what was popular at the data's end, and live events take over as they arrive.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
BUCKET_SECONDS = 300
SHARDS = 16
SETTLE_SECONDS = 60  # a closed bucket is read again this long (writes still in flight)
# Counters one refresh reads at most (newest buckets first): some 80 bytes each, so one
# 1 MB Query page per shard, about 1,600 read units and 40 MB of Python objects. Without a
# bound a cold instance would read every counter of the window: at 1,000 events/s over
# distinct items, 300,000 per bucket, 86 million (7 GB) in a 24-hour window.
MAX_COUNTERS = 160_000
BACKFILL_SECONDS = 3600  # an event dated this much before it arrived is history, not trending


def bucket_of(t: float) -> int:
    return int(t // BUCKET_SECONDS)


def shard_key(shard: int) -> str:
    """The partition of shard `shard`: a string of blanks. The API and the training data
    refuse blank user ids (lmrec.api.schemas, training/data.py), so no user's partition can
    ever be one of these."""
    return " " * (shard + 1)


def counted(timestamp: float, now: float) -> bool:
    """Whether an event arriving at `now` counts as trending (a backfill does not)."""
    return timestamp >= now - BACKFILL_SECONDS


def expires_at(bucket: int, window_seconds: float) -> int:
    """TTL of a bucket's counters: one window after the bucket closed, and a bucket more."""
    return int((bucket + 2) * BUCKET_SECONDS + window_seconds)


def decay(buckets: np.ndarray, now: float, half_life_seconds: float) -> np.ndarray:
    """(B,) weights 2^(-age / half-life). A bucket's events are taken as spread evenly over
    its elapsed part, so age is measured from that part's middle: half the elapsed time for
    the open bucket, from the bucket's middle once closed (continuous at the close, so a
    ranking does not jump when a new bucket opens)."""
    start = buckets * float(BUCKET_SECONDS)
    middle = (start + np.minimum(now, start + BUCKET_SECONDS)) / 2
    return np.exp2(-np.maximum(0.0, now - middle) / half_life_seconds)


@dataclass
class Snapshot:
    """Counts of the window as of `read_at`: bucket -> item -> events, flattened once into
    arrays so that a request's decay is a few numpy passes over the counters."""

    buckets: dict[int, dict[str, float]]
    read_at: float  # unix seconds
    partial_through: int | None = None  # buckets up to this one were partly read (the cap)

    def __post_init__(self) -> None:
        items = sorted({item for counts in self.buckets.values() for item in counts})
        index = {item: j for j, item in enumerate(items)}
        pairs = [(b, index[i], n) for b, counts in self.buckets.items() for i, n in counts.items()]
        self.items = items  # (U,) distinct item ids
        self._bucket = np.asarray([p[0] for p in pairs], np.int64)  # (C,) per counter
        self._item = np.asarray([p[1] for p in pairs], np.int64)  # (C,) into items
        self._count = np.asarray([p[2] for p in pairs], np.float64)  # (C,)
        self._rows: tuple[object, np.ndarray] | None = None  # (catalog, rows of items)

    def item_scores(self, now: float, half_life_seconds: float) -> np.ndarray:
        """(U,) decayed counts of `items`."""
        weights = decay(self._bucket, now, half_life_seconds) * self._count
        return np.bincount(self._item, weights=weights, minlength=len(self.items))

    def scores(self, now: float, half_life_seconds: float) -> dict[str, float]:
        return dict(zip(self.items, self.item_scores(now, half_life_seconds).tolist(), strict=True))

    def rows(self, catalog: object, lookup: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """(U,) catalog rows of `items` (0: not in it), looked up once per catalog."""
        if self._rows is None or self._rows[0] is not catalog:
            self._rows = (catalog, lookup(self.items))
        return self._rows[1]


class TrendingCounts:
    """One per warm instance: settled buckets read once and kept, the rest re-read when the
    snapshot is older than `cache_seconds`. `read(first, last, limit)` returns (bucket, item,
    count) rows of every shard, merged or not, newest first and at most `limit`, and the
    newest bucket the limit may have cut (UserStore.trending_counts). A cut bucket is kept
    as read (a warning says so): the cap bounds every refresh, a cold one included."""

    def __init__(
        self,
        read: Callable[[int, int, int], tuple[list[tuple[int, str, float]], int | None]],
        window_seconds: float,
        cache_seconds: float,
        clock: Callable[[], float] = time.time,
        max_counters: int = MAX_COUNTERS,
    ):
        self.read = read
        self.window_seconds = window_seconds
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.max_counters = max_counters
        self._partial: int | None = None  # the newest kept bucket that the cap cut
        self._kept: dict[int, dict[str, float]] = {}
        self._settled = -1  # buckets up to this one are kept and never read again
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The window's counts, at most `cache_seconds` old; when the store fails, the last
        snapshot (its `read_at` says how old), or the store's error when there is none."""
        with self._lock:
            now = self.clock()
            if self._snapshot is not None and now - self._snapshot.read_at < self.cache_seconds:
                return self._snapshot
            first = bucket_of(now - self.window_seconds)
            start = max(first, self._settled + 1)
            fresh: dict[int, dict[str, float]] = {}
            try:
                rows, cut = self.read(start, bucket_of(now), self.max_counters)
            except Exception as exc:
                if self._snapshot is None:
                    raise
                log.warning(
                    "trending counts not read, serving those of %.0f s ago: %s",
                    now - self._snapshot.read_at,
                    exc,
                )
                return self._snapshot
            for b, item, n in rows:
                counts = fresh.setdefault(b, {})
                counts[item] = counts.get(item, 0.0) + n
            settled = bucket_of(now - SETTLE_SECONDS) - 1  # closed a minute ago and more
            self._kept = {b: c for b, c in self._kept.items() if b >= first}
            self._kept.update({b: c for b, c in fresh.items() if b <= settled})
            self._settled = max(self._settled, settled)
            recent = {b: c for b, c in fresh.items() if b > settled}
            if cut is not None:
                log.warning(
                    "trending: over %d counters from bucket %d on; bucket %d and older are "
                    "partly read",
                    self.max_counters,
                    start,
                    cut,
                )
                self._partial = max(cut, self._partial or cut)
            if self._partial is not None and self._partial < first:
                self._partial = None  # the cut buckets left the window
            self._snapshot = Snapshot({**self._kept, **recent}, now, self._partial)
            return self._snapshot


def catalog_scores(
    snapshot: Snapshot | None,
    catalog: object,
    lookup: Callable[[list[str]], np.ndarray],
    popularity: np.ndarray,
    prior_events: float,
    half_life_seconds: float,
    now: float,
) -> np.ndarray:
    """(N + 1,) float64 trending scores of the catalog's rows (row 0 is padding: -inf):
    the prior plus the decayed live counts of the items the catalog knows."""
    pop = np.maximum(popularity.astype(np.float64), 0.0)
    pop[0] = 0.0
    total = pop.sum()
    scores = pop * (prior_events / total) if total > 0 else np.zeros_like(pop)
    if snapshot is not None and snapshot.items:
        rows = snapshot.rows(catalog, lookup)
        known = rows != 0
        np.add.at(scores, rows[known], snapshot.item_scores(now, half_life_seconds)[known])
    scores[0] = -math.inf
    return scores
