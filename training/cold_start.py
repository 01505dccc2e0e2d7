"""What a user with no usable history is served: all-time popularity, or what is popular now.

Serving has both answers. Trending (lmrec.trending) is the decayed counts of the events the
API receives over a prior: the bundle's recent_popularity.npy, the same estimator as the
recent_popularity baseline (training/baselines.py `recent_counts`) over all the rows. Which
answer a deployment should give is a property of its data: where what comes next is what is
new and popular then (MovieLens 100K under the time split: recent popularity 0.099 against
popularity 0.027 test NDCG@10) "now" wins; on a shop's log read leave-one-out all-time
popularity does. So the job measures it the way it chooses everything it serves: on valid,
paired over the same users, recent_popularity minus popularity; "trending" only when that
difference is above zero beyond noise, so that a tie does not switch what a known-good
default serves. Test figures are recorded beside the choice, on the test users, so the report
shows whether test agrees.

The choice travels in the manifest ("cold_start"); serving's LMREC_COLD_START=auto (the
default) follows it, popular or trending overrides it (lmrec.bundle.default_cold_start).
"""

from __future__ import annotations

import numpy as np

from training.evaluate import paired_gain

NOW, ALL_TIME = "recent_popularity", "popularity"
BASELINES = (NOW, ALL_TIME)


def _gain(per_user: dict[str, np.ndarray]) -> tuple[list[float], int] | None:
    if NOW not in per_user or ALL_TIME not in per_user:
        return None
    now, all_time = per_user[NOW], per_user[ALL_TIME]
    if len(now) != len(all_time):  # each array holds every user of one evalset, in order
        raise ValueError(f"{NOW}: {len(now)} users, {ALL_TIME}: {len(all_time)}")
    return [round(x, 4) for x in paired_gain(now - all_time)], len(now)


def choose_cold_start(
    valid: dict[str, np.ndarray], test: dict[str, np.ndarray] | None = None
) -> dict | None:
    """{"choice": "trending" | "popular", "valid": [mean, low, high], "valid_users", "why"}
    (+ "test", "test_users" when `test` holds both rows); None when valid lacks them (a job
    that evaluated no baselines)."""
    measured = _gain(valid)
    if measured is None:
        return None
    (mean, low, high), users = measured
    choice = "trending" if low > 0 else "popular"
    verdict = "ahead beyond noise" if low > 0 else ("behind" if high < 0 else "a tie")
    record: dict = {
        "choice": choice,
        "valid": [mean, low, high],
        "valid_users": users,
        "why": (
            f"recent popularity minus popularity on valid: {mean:+.4f} [{low:+.4f}, "
            f"{high:+.4f}] over {users:,} users, {verdict}"
        ),
    }
    on_test = _gain(test or {})
    if on_test is not None:
        record["test"], record["test_users"] = on_test
    return record


def cold_start_line(record: dict | None) -> str:
    """One line for the report and the job's output; "" without a record."""
    if not record:
        return ""
    line = f"cold start: serves {record['choice']} ({record['why']})"
    if "test" in record:
        mean, low, high = record["test"]
        line += f"; on test {mean:+.4f} [{low:+.4f}, {high:+.4f}]"
    return line + ". LMREC_COLD_START=auto follows it; popular or trending overrides it."
