"""benchmarks/collegemsg_csv.py: a SNAP temporal network (CollegeMsg) into lmrec's interactions."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "collegemsg_csv.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_messages_become_rows_in_time_order_with_ids_as_given(tmp_path: Path) -> None:
    # GIVEN SNAP's format: a comment, messages with one out of time order, a tie, a repeat
    text = "# SRC DST UNIXTS\n1 2 1082040961\n3 04 1082155839\n1 2 1082100000\n5 2 1082155839\n"
    (tmp_path / "msg.txt").write_text(text)
    # WHEN converted
    proc = _run("--source", str(tmp_path / "msg.txt"), "--out", str(tmp_path / "i.csv"))
    # THEN sender -> user, recipient -> item, in time order (the tie in file order), and the
    # id "04" is kept as written
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "i.csv", dtype=str).to_dict("records") == [
        {"user_id": "1", "item_id": "2", "timestamp": "1082040961"},
        {"user_id": "1", "item_id": "2", "timestamp": "1082100000"},
        {"user_id": "3", "item_id": "04", "timestamp": "1082155839"},
        {"user_id": "5", "item_id": "2", "timestamp": "1082155839"},
    ]
    assert proc.stdout.strip() == (
        "4 interactions, 3 users, 2 items; 25.0% of rows repeat a (user, item) pair"
    )


def test_a_gzip_copy_reads_the_same(tmp_path: Path) -> None:
    # GIVEN the file as SNAP serves it (CollegeMsg.txt.gz)
    with gzip.open(tmp_path / "msg.txt.gz", "wt") as handle:
        handle.write("7 8 100\n")
    # WHEN converted
    proc = _run("--source", str(tmp_path / "msg.txt.gz"), "--out", str(tmp_path / "i.csv"))
    # THEN the one message is the one row
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "i.csv").read_text() == "user_id,item_id,timestamp\n7,8,100\n"


def test_a_malformed_line_stops_with_its_number_and_writes_nothing(tmp_path: Path) -> None:
    # GIVEN a CSV with a header where SNAP's three integers are expected
    (tmp_path / "bad.txt").write_text("1 2 100\nuser,item,time\n")
    # WHEN converted
    proc = _run("--source", str(tmp_path / "bad.txt"), "--out", str(tmp_path / "i.csv"))
    # THEN exit code 1, one line naming the line, and no output file
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"{tmp_path / 'bad.txt'} line 2: expected 'SRC DST UNIXTS' (three integers), "
        "got 'user,item,time'"
    )
    assert not (tmp_path / "i.csv").exists()


def test_a_missing_or_empty_source_is_one_line(tmp_path: Path) -> None:
    missing = _run("--source", str(tmp_path / "none.txt"), "--out", str(tmp_path / "i.csv"))
    assert (missing.returncode, missing.stderr.strip()) == (1, f"no such file: {tmp_path}/none.txt")
    (tmp_path / "empty.txt").write_text("# only a comment\n")
    empty = _run("--source", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "i.csv"))
    assert empty.returncode == 1
    assert empty.stderr.strip().endswith("no messages (expected lines 'SRC DST UNIXTS')")
