"""benchmarks/online_retail_csv.py: the UCI Online Retail table into lmrec's interactions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "online_retail_csv.py"
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_purchases_kept_and_fees_returns_and_anonymous_rows_dropped(tmp_path: Path) -> None:
    # GIVEN a UCI-shaped table with one of each row the converter must drop
    rows = [
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850,UK",  # kept
        "536365,85123A,HEART,2,2010-12-01 08:26:00,2.55,17850,UK",  # same code, same invoice
        "536365,POST,POSTAGE,1,2010-12-01 08:26:00,18,17850,UK",  # a fee, not merchandise
        "C536379,22556,MUG,-1,2010-12-01 09:41:00,2.1,17850,UK",  # a cancellation
        "536370,22728,CLOCK,24,2010-12-01 08:45:00,3.75,,France",  # no customer
        "536371,22086,KIT,0,2010-12-01 09:00:00,2.55,13748,UK",  # quantity 0
        "536372,85123A,HEART,6,2010-12-01 09:01:00,2.55,17850,UK",  # a repeat purchase
    ]
    (tmp_path / "retail.csv").write_text(HEADER + "\n".join(rows) + "\n")
    # WHEN converted
    proc = _run("--source", str(tmp_path / "retail.csv"), "--out", str(tmp_path / "i.csv"))
    # THEN the two purchases of 85123A stay, in time order, ids as strings as given
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "i.csv", dtype=str)
    assert out.to_dict("records") == [
        {"user_id": "17850", "item_id": "85123A", "timestamp": "1291191960"},
        {"user_id": "17850", "item_id": "85123A", "timestamp": "1291194060"},
    ]
    assert proc.stdout.strip() == (
        "2 interactions, 1 users, 1 items; 50.0% of rows repeat a (user, item) pair"
    )
    for why in ("cancellation", "no customer", "quantity or price", "not merchandise", "same code"):
        assert f"dropped 1 rows: {why}" in proc.stderr


def _one_row_of_retail_ii(path: Path) -> None:
    """One Online Retail II row as its parquet copies hold it: II's column names, a float
    CustomerID (as pandas reads the UCI sheet), no Description column."""
    pd.DataFrame(
        {
            "Invoice": ["489434"],
            "StockCode": ["85048"],
            "Quantity": [12],
            "InvoiceDate": pd.to_datetime(["2009-12-01 07:45:00"]),
            "Price": [6.95],
            "Customer ID": [13085.0],
        }
    ).to_parquet(path)


def test_parquet_float_customer_ids_lose_the_decimal_point(tmp_path: Path) -> None:
    # GIVEN a parquet copy whose CustomerID column is float (as pandas reads the UCI sheet)
    _one_row_of_retail_ii(tmp_path / "ii.parquet")
    # WHEN converted (Online Retail II names its columns differently)
    proc = _run("--source", str(tmp_path / "ii.parquet"), "--out", str(tmp_path / "i.csv"))
    # THEN the id is the integer the sheet shows
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "i.csv", dtype=str)["user_id"].tolist() == ["13085"]


def test_items_csv_takes_the_most_frequent_description_and_the_median_price(
    tmp_path: Path,
) -> None:
    # GIVEN a stock code sold under two descriptions (the later one more often), one whose
    # two descriptions tie, and a fee whose row is dropped
    rows = [
        "536365,85123A,CREAM HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,UK",
        "536366,85123A,WHITE HANGING HEART,6,2010-12-01 08:28:00,2.95,17850,UK",
        "536367,85123A,WHITE HANGING HEART ,6,2010-12-01 08:34:00,3.25,13047,UK",
        "536368,85123A,,6,2010-12-01 08:35:00,9.99,13047,UK",
        "536369,01234,PAPER LANTERN,1,2010-12-01 08:40:00,1.0,13047,UK",
        "536370,01234,LANTERN PAPER,1,2010-12-01 08:41:00,2.0,13047,UK",
        "536371,POST,POSTAGE,1,2010-12-01 08:42:00,18,13047,UK",
    ]
    (tmp_path / "retail.csv").write_text(HEADER + "\n".join(rows) + "\n")
    # WHEN converted with --items
    out = tmp_path / "out" / "interactions.csv"
    proc = _run("--source", str(tmp_path / "retail.csv"), "--out", str(out), "--items")
    # THEN items.csv beside it holds the kept items, ids as given (leading zero, letter)
    assert proc.returncode == 0, proc.stderr
    items = pd.read_csv(tmp_path / "out" / "items.csv", dtype={"item_id": str})
    assert items.to_dict("records") == [
        {"item_id": "85123A", "title": "WHITE HANGING HEART", "price": 3.1},
        {"item_id": "01234", "title": "PAPER LANTERN", "price": 1.5},
    ]
    assert set(items["item_id"]) == set(pd.read_csv(out, dtype=str)["item_id"])


def test_items_without_a_description_column_exit_with_one_line(tmp_path: Path) -> None:
    _one_row_of_retail_ii(tmp_path / "ii.parquet")
    proc = _run(
        "--source", str(tmp_path / "ii.parquet"), "--out", str(tmp_path / "i.csv"), "--items"
    )
    assert proc.returncode != 0
    assert (
        proc.stderr.strip() == f"{tmp_path}/ii.parquet: no column Description (needed by --items)"
    )


def test_missing_file_or_columns_exit_with_one_line(tmp_path: Path) -> None:
    proc = _run("--source", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "i.csv"))
    assert proc.returncode != 0 and proc.stderr.strip() == f"no such file: {tmp_path}/nope.csv"
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    proc = _run("--source", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "i.csv"))
    assert proc.returncode != 0
    assert "no column InvoiceNo" in proc.stderr.strip().splitlines()[-1]
