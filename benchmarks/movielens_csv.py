"""MovieLens ratings and movies as lmrec's interactions.csv and items.csv (benchmarks only).

    python benchmarks/movielens_csv.py --ratings ml-1m/ratings.dat --movies ml-1m/movies.dat \\
        --out ../coldrank_data/ml-1m
    python benchmarks/movielens_csv.py --ratings ml-latest-small/ratings.csv \\
        --movies ml-latest-small/movies.csv --out ../coldrank_data/ml-latest-small

Reads the GroupLens ".dat" layout (UserID::MovieID::Rating::Timestamp, MovieID::Title::Genres,
Latin-1) or the ml-latest CSV layout (a header row; columns user, movie, rating, timestamp
and movie, title, genres, by position since copies rename them). Writes
interactions.csv (user_id,item_id,rating,timestamp) and items.csv
(item_id,title,release_year,genres) as training/sample_data/ml-100k has them: the year
"(1995)" is cut from the title into release_year, "(no genres listed)" becomes empty. IDs
are kept as given. The data's licence (GroupLens terms) travels with any copy: see
docs/experiments.md; nothing converted is committed.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def read_table(path: Path, names: list[str]) -> pd.DataFrame:
    if path.suffix == ".dat":
        lines = path.read_text(encoding="latin-1").splitlines()
        rows = [line.split("::") for line in lines if line.strip()]
        bad = [r for r in rows if len(r) != len(names)]
        if bad:
            raise SystemExit(f"{path}: {len(bad)} lines without {len(names)} '::' fields")
        return pd.DataFrame(rows, columns=names)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if frame.shape[1] < len(names):
        raise SystemExit(f"{path}: {frame.shape[1]} columns, expected {len(names)}")
    frame = frame.iloc[:, : len(names)]
    frame.columns = names
    return frame


def items_of(movies: pd.DataFrame) -> pd.DataFrame:
    title = movies["title"].str.strip()
    year = title.str.extract(_YEAR, expand=False).fillna("")
    genres = movies["genres"].str.strip().replace("(no genres listed)", "")
    return pd.DataFrame(
        {
            "item_id": movies["item_id"].str.strip(),
            "title": title.str.replace(_YEAR, "", regex=True),
            "release_year": year,
            "genres": genres,
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratings", type=Path, required=True)
    p.add_argument("--movies", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    for path in (a.ratings, a.movies):
        if not path.is_file():
            sys.exit(f"no such file: {path}")
    inter = read_table(a.ratings, ["user_id", "item_id", "rating", "timestamp"])
    if not inter["timestamp"].str.strip().str.fullmatch(r"\d+").all():
        sys.exit(f"{a.ratings}: timestamps must be unix seconds")
    items = items_of(read_table(a.movies, ["item_id", "title", "genres"]))
    a.out.mkdir(parents=True, exist_ok=True)
    inter.to_csv(a.out / "interactions.csv", index=False)
    items.to_csv(a.out / "items.csv", index=False)
    print(f"{len(inter)} interactions, {inter['user_id'].nunique()} users, {len(items)} items")


if __name__ == "__main__":
    main()
