"""UCI Online Retail (I or II) as lmrec's interactions.csv: user_id,item_id,timestamp
(benchmarks only; a repeat-purchase log for issue 28).

    python benchmarks/online_retail_csv.py --source online_retail.parquet \\
        --out /work/data/online-retail/interactions.csv

Reads the UCI columns by name (InvoiceNo or Invoice, StockCode, Quantity, InvoiceDate,
UnitPrice or Price, CustomerID or "Customer ID") from .parquet or .csv (a CSV's dates are
parsed as ISO unless --date-format is given: copies disagree on day-first). Kept: one row per
purchased (invoice, stock code), the customer as user_id and the stock code as item_id,
both strings as given (a float 17850.0 read from parquet becomes "17850"), the invoice time
as unix seconds (the data's clock, taken as UTC). Dropped, each counted on stderr:
cancellations (invoice "C..."), rows without a customer, non-positive quantity or price
(returns, adjustments), stock codes that do not start with a digit (POST, D, M, DOT,
BANK CHARGES, AMAZONFEE, gift vouchers: fees and adjustments, not merchandise), and a second
line of the same code on one invoice (one purchase, not a repeat). With --items, also
items.csv beside it (item_id,title,price) for the items in the kept rows: the stock code as
given, its most frequent non-empty Description among the kept rows (ties: the first seen in
the file) and the median UnitPrice of those rows. The licence (CC BY 4.0,
Chen 2015, UCI Machine Learning Repository, doi:10.24432/C5BW33) travels with any copy;
nothing converted is committed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import interactions_csv

# Online Retail II renamed three columns; the first name of each pair is Online Retail's.
_NAMES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
_NEEDED = ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]


def read_source(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, dtype={"InvoiceNo": str, "Invoice": str, "StockCode": str})
    frame = frame.rename(columns=_NAMES)
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        raise SystemExit(f"{path}: no column {', '.join(missing)} (columns: {list(frame)})")
    return frame[[*_NEEDED, *(["Description"] if "Description" in frame else [])]]


def _customer(values: pd.Series) -> pd.Series:
    """The id as the UCI sheet shows it: an integer, read back from a float column."""
    text = values.astype("string").str.strip()
    return text.str.replace(r"\.0$", "", regex=True)


def _seconds(values: pd.Series, date_format: str | None) -> pd.Series:
    when = pd.to_datetime(values, format=date_format or "ISO8601")
    return (when - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)


def convert(frame: pd.DataFrame, date_format: str | None = None) -> tuple[pd.DataFrame, dict]:
    """(kept rows in time order: user_id, item_id, timestamp, invoice, title, price;
    {reason: rows dropped}); each reason counts the rows it removed after the reasons before it."""
    rules = {
        "cancellation": lambda f: ~f["InvoiceNo"].astype(str).str.startswith("C"),
        "no customer": lambda f: f["CustomerID"].notna(),
        "quantity or price <= 0": lambda f: (f["Quantity"] > 0) & (f["UnitPrice"] > 0),
        "not merchandise": lambda f: f["StockCode"].astype(str).str.match(r"\d"),
    }
    dropped = {}
    for why, keep in rules.items():
        mask = keep(frame).to_numpy(dtype=bool)
        dropped[why] = int((~mask).sum())
        frame = frame[mask]
    out = pd.DataFrame(
        {
            "user_id": _customer(frame["CustomerID"]),
            "item_id": frame["StockCode"].astype(str).str.strip(),
            "timestamp": _seconds(frame["InvoiceDate"], date_format),
            "invoice": frame["InvoiceNo"].astype(str),
            "title": frame.get("Description", pd.Series(index=frame.index, dtype="string")),
            "price": frame["UnitPrice"],
        }
    )
    before = len(out)
    out = out.drop_duplicates(["invoice", "item_id"])
    dropped["same code twice on an invoice"] = before - len(out)
    # Time, then invoice, then the file's line order: the loader keeps ties in file order.
    return out.sort_values(["timestamp", "invoice"], kind="stable"), dropped


def catalog(kept: pd.DataFrame) -> pd.DataFrame:
    """item_id,title,price per item of the kept rows (in their first-seen order): the most
    frequent non-empty title (ties: the first seen) and the median price."""
    kept = kept.sort_index(kind="stable")  # the file's order, for "first seen"
    titles = kept["title"].astype("string").str.strip()
    named = kept.assign(title=titles)[titles.fillna("") != ""]
    counts = named.groupby(["item_id", "title"], sort=False).size().rename("n").reset_index()
    best = counts.sort_values("n", ascending=False, kind="stable").drop_duplicates("item_id")
    price = kept.groupby("item_id", sort=False)["price"].median()
    out = pd.DataFrame({"item_id": kept["item_id"].drop_duplicates()})
    out["title"] = out["item_id"].map(best.set_index("item_id")["title"]).fillna("")
    out["price"] = out["item_id"].map(price)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True, help="the UCI table, .parquet or .csv")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--date-format", help="strftime format of a CSV's InvoiceDate")
    p.add_argument("--items", action="store_true", help="also write items.csv beside --out")
    a = p.parse_args()
    if not a.source.is_file():
        sys.exit(f"no such file: {a.source}")
    source = read_source(a.source)
    if a.items and "Description" not in source:
        sys.exit(f"{a.source}: no column Description (needed by --items)")
    kept, dropped = convert(source, a.date_format)
    out = kept[["user_id", "item_id", "timestamp"]]
    interactions_csv.write(out, a.out)
    if a.items:
        items = catalog(kept)
        items.to_csv(a.out.parent / "items.csv", index=False)
        print(f"{len(items)} items written to {a.out.parent / 'items.csv'}", file=sys.stderr)
    for why, n in dropped.items():
        print(f"dropped {n} rows: {why}", file=sys.stderr)


if __name__ == "__main__":
    main()
