"""SNAP CollegeMsg (or any SNAP temporal network "SRC DST UNIXTS") as lmrec's
interactions.csv: user_id,item_id,timestamp (benchmarks only; a repeat-heavy log for issue 28).

    python benchmarks/collegemsg_csv.py --source CollegeMsg.txt \\
        --out /work/data/collegemsg/interactions.csv

CollegeMsg: private messages on a student social network at UC Irvine, 2004 (Panzarasa,
Opsahl & Carley 2009; https://snap.stanford.edu/data/CollegeMsg.html): 59,835 messages among
1,899 users. A message u -> v at t becomes the row (user_id=u, item_id=v, timestamp=t):
"whom will this user write to next", where writing again to a known contact is a repeat.
Ids are kept as the file gives them (strings of digits), the time in unix seconds; rows are
in time order (ties in file order). Reads .txt or .txt.gz; lines starting with "#" are
comments (SNAP's convention). Any other line that is not three whitespace-separated
non-negative integers stops the conversion with its line number. Nothing converted is
committed; cite the source paper with any figure.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import interactions_csv


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        yield from handle


def read_edges(path: Path) -> pd.DataFrame:
    """The file's messages in file order; SystemExit naming the first malformed line."""
    rows = []
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 3 or not all(f.isdigit() for f in fields):
            shown = line.strip()[:60]
            raise SystemExit(
                f"{path} line {number}: expected 'SRC DST UNIXTS' (three integers), got {shown!r}"
            )
        rows.append(fields)
    if not rows:
        raise SystemExit(f"{path}: no messages (expected lines 'SRC DST UNIXTS')")
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True, help="CollegeMsg.txt or .txt.gz")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    if not a.source.is_file():
        sys.exit(f"no such file: {a.source}")
    edges = read_edges(a.source)
    when = edges["timestamp"].astype("int64")
    out = edges.iloc[when.argsort(kind="stable")]
    interactions_csv.write(out, a.out)


if __name__ == "__main__":
    main()
