"""Rows of one user that share a timestamp: in which order training reads them
(DataConfig.tie_order).

A tie's order in the file is either the order of events (a shop's invoice lines as they were
added: UCI Online Retail, where 92.6% of test targets complete the last invoice) or an order
the export made up (MovieLens logs half its consecutive ratings in the same second;
ml-latest-small lists each second's ratings by movie id). Training in the file's order lets
the model learn the first; shuffling each epoch keeps it from learning the second. Evaluation,
co-occurrence and the transitions table always read the file's order. `auto` keeps the
file's order when the timestamps are basket stamps (most of a user's consecutive rows
share one) not sorted by item id, and shuffles a clock's occasional collisions.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

# A tie order is taken as a sort when at least this share of its consecutive pairs go one
# way by item id (string or, for numeric ids, number): a sort gives 1.0; ML-100K's ties
# give 0.50 and Online Retail's 0.52 (the larger of the two ways).
SORTED_SHARE = 0.99
# At least this share of a user's consecutive rows tied: the timestamp stamps a basket
# (Online Retail: 95.4%, one per invoice), and the file's line order is the only order of
# events there is. Below it the ties are a clock's collisions (MovieLens 100K: 51.0% in
# one-second steps), whose order in the file carries nothing (the two orders tie there,
# docs/experiments.md "Ties in the file's order").
BASKET_SHARE = 0.80


def sorted_share(
    item_ids: np.ndarray, item_codes: np.ndarray, user_codes: np.ndarray, ts: np.ndarray
) -> tuple[int, int, float]:
    """(tied pairs, consecutive pairs of one user, the largest share of tied pairs in id
    order, ascending or descending, by the ids as strings or as numbers). Rows are sorted by
    user then time, ties in file order; item_codes index item_ids, which are sorted. Pairs of
    equal ids (a repeat) say nothing about an order and are left out."""
    same_user = user_codes[1:] == user_codes[:-1]
    tie = same_user & (ts[1:] == ts[:-1])
    n = int(tie.sum())
    if n == 0:
        return 0, int(same_user.sum()), 0.0
    first, second = item_codes[:-1][tie], item_codes[1:][tie]
    best = _one_way(first, second)  # codes follow the ids' string order
    numeric = pd.to_numeric(pd.Series(item_ids), errors="coerce").to_numpy(dtype=np.float64)
    # exact as float64 only up to 2**53; larger ids (snowflakes) keep their string order,
    # which is their number order when they have the same length
    exact = np.isfinite(numeric) & (np.abs(numeric) <= 2.0**53)
    both = exact[first] & exact[second]
    if both.mean() >= 0.5:  # most tied pairs are numbers: judge the number order on those
        best = max(best, _one_way(numeric[first[both]], numeric[second[both]]))
    return n, int(same_user.sum()), best


def _one_way(a: np.ndarray, b: np.ndarray) -> float:
    """The larger share of the pairs (a, b) with a != b that go up, or that go down."""
    differ = a != b
    if not differ.any():
        return 0.0
    up = float(np.mean(b[differ] > a[differ]))
    return max(up, 1.0 - up)


def choose_ties(setting: str, tied: int, pairs: int, in_id_order: float) -> dict:
    """{"mode": "file" | "shuffle", "share", "chosen_by", "why"}; with auto and ties in the
    data the job says what it chose and why, on stderr (stdout stays machine-readable)."""
    share = tied / max(pairs, 1)
    figure = f"{share:.1%} of a user's consecutive rows share a timestamp"
    if setting != "auto":
        mode, why = setting, f"tie_order={setting} was set; {figure}"
    elif tied == 0:
        mode, why = "file", "no two rows of a user share a timestamp"
    elif in_id_order >= SORTED_SHARE:
        mode = "shuffle"
        why = (
            f"{figure}, listed by item id inside each timestamp ({in_id_order:.0%} of tied "
            "pairs): an order the file made, shuffled each epoch"
        )
    elif share >= BASKET_SHARE:
        mode = "file"
        why = (
            f"{figure}, at least {BASKET_SHARE:.0%}, not sorted by item id ({in_id_order:.0%} "
            "one way): timestamps of baskets, whose order in the file is taken as the order "
            "of events; set tie_order=shuffle if it is not"
        )
    else:
        mode = "shuffle"
        why = (
            f"{figure}, under {BASKET_SHARE:.0%}: a clock's collisions, shuffled each epoch; "
            "set tie_order=file if the file lists them in the order they happened"
        )
    if setting == "auto" and tied:
        print(f"ties: auto chose {mode} ({why})", file=sys.stderr, flush=True)
    chosen_by = "auto" if setting == "auto" else "set"
    return {"mode": mode, "share": round(share, 6), "chosen_by": chosen_by, "why": why}


def tie_mode(data, setting: str) -> str:
    """The order training reads `data`'s ties in: load_interactions' record, else (data built
    by hand: tests, benchmarks) the setting, with auto keeping the old rule (shuffle)."""
    record = data.stats.get("ties")
    if record:
        return record["mode"]
    return "shuffle" if setting == "auto" else setting
