"""A synthetic repeat-consumption log, for tests and as a documented stand-in.

Each user has a pool of favourite items (drawn by a Zipf popularity) and, at each step,
either repeats (probability `repeat`): an item of the pool, the newest ones likelier; or
explores: an item that follows their newest one in a fixed catalog-wide order (item i leads
to i+1..i+3, so exploring is learnable from transitions) or, one time in three, a popular
item; an explored item joins the pool. Users start at random times over the log's span.

    python benchmarks/repeat_data.py --users 2000 --out runs/data/synthetic-repeats.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def _user(rng, n_items: int, popularity: np.ndarray, length: int, repeat: float) -> list[int]:
    pool = list(rng.choice(n_items, size=int(rng.integers(3, 8)), replace=False, p=popularity))
    seq = [int(rng.choice(pool))]
    for _ in range(length - 1):
        if rng.random() < repeat:
            weights = 0.8 ** np.arange(len(pool))[::-1]  # newer pool items likelier
            item = pool[int(rng.choice(len(pool), p=weights / weights.sum()))]
        elif rng.random() < 2 / 3:
            item = (seq[-1] + int(rng.integers(1, 4))) % n_items
        else:
            item = int(rng.choice(n_items, p=popularity))
        if item in pool:
            pool.remove(item)
        pool.append(item)  # the newest at the end
        seq.append(item)
    return seq


def generate(
    users: int = 2000,
    items: int = 500,
    mean_length: int = 40,
    repeat: float = 0.6,
    seed: int = 0,
) -> pd.DataFrame:
    """user_id, item_id, timestamp (seconds); ids are strings."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    rows = []
    span = 1_000_000.0
    for u in range(users):
        length = max(3, int(rng.poisson(mean_length)))
        seq = _user(rng, items, popularity, length, repeat)
        start = rng.uniform(0, span * 0.7)
        times = start + np.sort(rng.uniform(0, span * 0.3, size=length))
        rows += [(f"u{u}", f"i{i}", float(t)) for i, t in zip(seq, times, strict=True)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--repeat", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    generate(args.users, args.items, repeat=args.repeat, seed=args.seed).to_csv(
        args.out, index=False
    )


if __name__ == "__main__":
    main()
