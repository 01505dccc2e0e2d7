"""Writing a converted public log as the job's interactions.csv, with the one summary line
the converters print (benchmarks/*_csv.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write(frame: pd.DataFrame, path: Path) -> None:
    """`frame` (user_id, item_id, timestamp, ...) to `path`; prints its size and the share of
    rows that repeat a (user, item) pair (what repeats=auto will decide on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    pairs = frame.duplicated(["user_id", "item_id"]).mean()
    print(
        f"{len(frame)} interactions, {frame['user_id'].nunique()} users, "
        f"{frame['item_id'].nunique()} items; {pairs:.1%} of rows repeat a (user, item) pair"
    )
