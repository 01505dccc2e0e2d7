"""benchmarks/movielens_csv.py: GroupLens files into lmrec's interactions.csv / items.csv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "movielens_csv.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_dat_layout_becomes_lmrec_csv_with_year_cut_from_title(tmp_path: Path) -> None:
    # GIVEN ml-1m style files: "::" fields, Latin-1 titles, a title without a year
    (tmp_path / "ratings.dat").write_bytes(b"1::10::5::978300760\n2::20::3::978302109\n")
    (tmp_path / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy|Romance\n20::Untitled::(no genres listed)\n".encode("latin-1")
    )
    # WHEN converted
    proc = _run(
        "--ratings", str(tmp_path / "ratings.dat"), "--movies", str(tmp_path / "movies.dat"),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    # THEN ids stay strings as given, the year is its own column, no genres is empty
    assert proc.returncode == 0, proc.stderr
    inter = pd.read_csv(tmp_path / "out" / "interactions.csv", dtype=str)
    assert inter.to_dict("records")[0] == {
        "user_id": "1",
        "item_id": "10",
        "rating": "5",
        "timestamp": "978300760",
    }
    items = pd.read_csv(tmp_path / "out" / "items.csv", dtype=str, keep_default_na=False)
    assert items.to_dict("records") == [
        {"item_id": "10", "title": "Amélie", "release_year": "2001", "genres": "Comedy|Romance"},
        {"item_id": "20", "title": "Untitled", "release_year": "", "genres": ""},
    ]


def test_malformed_lines_and_missing_files_exit_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5\n")
    (tmp_path / "movies.dat").write_text("10::A (2001)::Drama\n")
    proc = _run(
        "--ratings", str(tmp_path / "ratings.dat"), "--movies", str(tmp_path / "movies.dat"),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert proc.returncode != 0
    assert "without 4 '::' fields" in proc.stderr.strip().splitlines()[-1]
    proc = _run("--ratings", str(tmp_path / "nope.dat"), "--movies", "x", "--out", "y")
    assert proc.returncode != 0 and proc.stderr.strip() == f"no such file: {tmp_path}/nope.dat"
