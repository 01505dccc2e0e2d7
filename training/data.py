"""Load, validate and encode interaction logs.

IDs are strings at the boundary and contiguous integers inside: items 1..n_items (0 is
padding), users 0..n_users-1. Every problem with the input fails fast with one line that
names the file, the column and the row.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from lmrec import store

from training.config import DataConfig
from training.ties import choose_ties, sorted_share

log = logging.getLogger(__name__)

OPTIONAL_COLUMNS = ("event_type", "rating", "weight")
# repeats=auto keeps repeated (user, item) rows when they are at least this share of the
# rows: when most next interactions are repeats (JODIE Wikipedia 88.4%, the synthetic
# repeat log 58%), a model that never recommends a seen item misses most of them. A shop's
# log repeats a pair rarely (ML-100K 0.0%, Games 0.0%); the synthetic scale ladder's random
# walks revisit by chance (S 21.3%, M 25.2%, L 27.1%) and stay a shop: at 20% they would
# have flipped to keep and changed every ladder figure and time budget.
REPEATS_AUTO_SHARE = 0.50


class DataError(ValueError):
    """Input data that cannot be trained on; the message is meant for a person."""


# Errors name the file, the column and the line, never a cell's value: the message is
# stored (the job's output/failure, the promote function's decisions/ record) and a cell
# may be a user id or what a user did.


def _found_columns(df: pd.DataFrame, expected) -> str:
    """The header's names when it is one (it holds an expected name); a first line with
    none of them may be data (a file without a header), so only its width is told."""
    from lmrec.redact import truncate

    names = [str(c) for c in df.columns]
    if set(names) & set(expected):
        return truncate(repr(names), 200)
    return f"{len(names)} column(s) and none of the expected names (is line 1 a header?)"


@dataclass
class Interactions:
    """Cleaned, encoded interactions, sorted by user then time."""

    user_ids: np.ndarray  # (n_users,) external ids as str
    item_ids: np.ndarray  # (n_items,) external ids as str; internal item i <-> item_ids[i - 1]
    offsets: np.ndarray  # (n_users + 1,) int64; user u's items are items[offsets[u]:offsets[u+1]]
    items: np.ndarray  # (n_interactions,) int64 in 1..n_items
    timestamps: np.ndarray  # (n_interactions,) float64 seconds (or ordinal positions)
    fingerprint: str  # sha256 over the cleaned (user, item, timestamp) rows
    stats: dict = field(default_factory=dict)
    catalog: pd.DataFrame | None = None  # indexed by external item id (str), vocabulary items only
    # training.item_content.ItemContent when the model reads the catalog (set by
    # training.pipeline.prepare_data on every process; derived, never stored)
    content: Any = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def data_files(uri: str) -> list[str]:
    """The data files at a path/URI: the file itself, or every CSV/Parquet file below it."""
    try:
        files = store.list_files(uri)
    except store.StoreError as exc:
        raise DataError(str(exc)) from None
    root = str(store.parse(uri))
    found = [f for f in files if store.is_data_file(f, root)]
    if not found:
        raise DataError(f"{uri}: no data files found (expected {', '.join(store.DATA_SUFFIXES)})")
    return found


def read_table(uri: str) -> pd.DataFrame:
    """One CSV or Parquet file as a DataFrame whose CSV cells are all strings."""
    try:
        raw = store.read_bytes(uri)
    except store.StoreError as exc:
        raise DataError(str(exc)) from None
    return table_from_bytes(raw, uri)


def table_from_bytes(raw: bytes, uri: str) -> pd.DataFrame:
    """read_table of bytes already read (the deletion job reads them with their ETag)."""
    if not raw:
        raise DataError(f"{uri}: the file is empty")
    name = uri.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(io.BytesIO(raw))
        return pd.read_csv(
            io.BytesIO(raw),
            dtype=str,
            keep_default_na=False,  # an id "NA" is an id; empty cells are caught below
            sep="\t" if name.endswith(".tsv") else ",",
            compression="gzip" if name.endswith(".gz") else None,
        )
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable input
        raise DataError(
            f"{uri}: cannot be read as {'Parquet' if 'parq' in name else 'CSV'}: {exc}"
        ) from None


def _row_label(uri: str, index: int) -> str:
    # CSV: line number in the file (header is line 1); Parquet: 0-based row.
    if uri.lower().endswith((".parquet", ".pq")):
        return f"row {index}"
    return f"line {index + 2}"


def normalise_ids(values: pd.Series) -> pd.Series:
    """Ids as strings, as training reads them; null cells stay null (pd.NA).

    Kept exactly as given (" 1 " and "1" are two users, as in the API), except that
    integers stored as floats (a Parquet column with nulls, or written by pandas from
    one) are written as integers: 12.0 is user "12". A categorical column is read through
    its categories, by the same rule."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        names = normalise_ids(pd.Series(values.cat.categories))
        codes = values.cat.codes.to_numpy()
        out = pd.Series(names.to_numpy(dtype=object)[codes], index=values.index, dtype=object)
        out[codes < 0] = pd.NA
        return out
    null = values.isna().to_numpy()
    present = values[~null] if null.any() else values
    if pd.api.types.is_float_dtype(values) and len(present) and (present % 1 == 0).all():
        present = present.astype("int64")
    if not null.any():
        return present.astype(str)  # the common case: no object array of its own
    out = pd.Series(pd.NA, index=values.index, dtype=object)
    out[~null] = present.astype(str).to_numpy(dtype=object)
    return out


def read_ids(df: pd.DataFrame, col: str, uri: str) -> pd.Series:
    text = normalise_ids(df[col])
    # an id that is empty or only whitespace is refused, as the API refuses it
    bad = text.isna().to_numpy() | (text.fillna("").str.strip() == "").to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{uri}: column {col!r} has {int(bad.sum())} null or blank id(s), first at "
            f"{_row_label(uri, first)}"
        )
    return text.astype(str)


def _epoch_seconds(parsed: pd.Series) -> np.ndarray:
    # Through a Timedelta, not astype(int64): pandas 3 may store seconds, us or ns.
    delta = (parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return delta.to_numpy(dtype=np.float64, na_value=0.0)


def _timestamps(df: pd.DataFrame, col: str, uri: str) -> np.ndarray:
    values = df[col]
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
        bad = parsed.isna().to_numpy()
        seconds = _epoch_seconds(parsed)
    elif pd.api.types.is_numeric_dtype(values):
        seconds = values.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(seconds)
    else:
        text = values.astype(str).str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        # numbers or dates by what most cells hold: a bad first cell must not make every
        # other one look unparsable
        if numeric.notna().sum() * 2 >= (text != "").sum():
            seconds = numeric.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(seconds)
        else:  # ISO 8601 dates or date-times
            parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
            bad = parsed.isna().to_numpy()
            seconds = np.where(bad, 0.0, _epoch_seconds(parsed))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{uri}: column {col!r} has {int(bad.sum())} unparsable timestamp(s), first at "
            f"{_row_label(uri, first)} (expected unix seconds or ISO 8601)"
        )
    return seconds


def _read_interactions(uri: str, cfg: DataConfig) -> pd.DataFrame:
    df = read_table(uri)
    if df.empty:
        raise DataError(f"{uri}: the file has a header but no rows")
    required = {"user_id": cfg.user_col, "item_id": cfg.item_col, "timestamp": cfg.time_col}
    missing = [col for col in required.values() if col not in df.columns]
    if missing:
        raise DataError(
            f"{uri}: missing column(s) {', '.join(map(repr, missing))}; found "
            f"{_found_columns(df, required.values())} (map names with the user_col/item_col/"
            "time_col hyperparameters)"
        )
    out = pd.DataFrame(
        {
            "user_id": read_ids(df, cfg.user_col, uri),
            "item_id": read_ids(df, cfg.item_col, uri),
            "timestamp": _timestamps(df, cfg.time_col, uri),
        }
    )
    if "event_type" in df.columns:
        out["event_type"] = df["event_type"].astype(str).str.strip()
    return out


def _fingerprint(user_ids, item_ids, user_codes, item_codes, ts) -> str:
    """sha256 over the cleaned rows' (user, item, timestamp) hashes, in row order.

    pandas' vectorised row hash (siphash of each value) stands in for formatting every row
    in Python: 12.6M rows take seconds, not minutes. Ids are hashed once per distinct id."""
    u_hash = pd.util.hash_array(np.asarray(user_ids, dtype=object))
    i_hash = pd.util.hash_array(np.asarray(item_ids, dtype=object))
    rows = np.stack([u_hash[user_codes], i_hash[item_codes], ts.view(np.uint64)], axis=1)
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()


def _encode(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids as str, int32 codes): no per-row Python string array."""
    codes, uniques = pd.factorize(values, sort=True)
    # numpy's str arrays (the bundle's too) drop trailing NULs: "17\0" would become "17"
    nul = pd.Index(uniques).str.contains("\x00", regex=False)
    if nul.any():
        raise DataError(
            f"column {values.name!r}: {int(nul.sum())} id(s) hold a NUL character (first: "
            f"{str(uniques[int(np.flatnonzero(nul)[0])])[:64]!r}); ids must be text without NUL"
        )
    return np.asarray(uniques, dtype=str), codes.astype(np.int32)


def _drop_repeats(user_codes, item_codes, n_items: int) -> np.ndarray:
    """Mask keeping the first interaction of each (user, item). With repeats dropped serving
    excludes seen items, so a repeat would only ever be a target no recommender may produce."""
    pair = user_codes.astype(np.int64) * n_items + item_codes
    _, first = np.unique(pair, return_index=True)
    keep = np.zeros(len(pair), dtype=bool)
    keep[first] = True
    return keep


def load_interactions(uri: str, cfg: DataConfig, items_uri: str | None = None) -> Interactions:
    frames = [_read_interactions(f, cfg) for f in data_files(uri)]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    raw_rows = len(df)
    dropped: dict[str, int] = {}

    if cfg.event_types and "event_type" in df.columns:
        wanted = {e.strip() for e in cfg.event_types.split(",") if e.strip()}
        df = df[df["event_type"].isin(wanted)]
        dropped["other_event_types"] = raw_rows - len(df)

    # Sort by user then time; ties keep file order (np.lexsort is stable).
    users, user_codes = _encode(df["user_id"])
    items, item_codes = _encode(df["item_id"])
    ts = df["timestamp"].to_numpy(dtype=np.float64)
    del df
    order = np.lexsort((ts, user_codes))
    user_codes, item_codes, ts = user_codes[order], item_codes[order], ts[order]

    first = _drop_repeats(user_codes, item_codes, len(items))
    repeats = choose_repeats(cfg.repeats, int(len(first) - first.sum()), len(first))
    keep = first if repeats["mode"] == "drop" else np.ones(len(first), dtype=bool)
    dropped["repeated_user_item"] = int(len(keep) - keep.sum())
    counts = np.bincount(user_codes[keep], minlength=len(users))
    short = keep & (counts[user_codes] < cfg.min_user_interactions)
    dropped["short_history_rows"] = int(short.sum())
    dropped["short_history_users"] = int(
        ((counts > 0) & (counts < cfg.min_user_interactions)).sum()
    )
    keep &= ~short
    user_codes, item_codes, ts = user_codes[keep], item_codes[keep], ts[keep]

    # Re-encode to contiguous ranges after filtering.
    used_users, user_codes = np.unique(user_codes, return_inverse=True)
    used_items, item_codes = np.unique(item_codes, return_inverse=True)
    user_ids, item_ids = users[used_users], items[used_items]
    lengths = np.bincount(user_codes, minlength=len(user_ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    _check_enough(uri, cfg, n=len(item_codes), lengths=lengths)
    ties = choose_ties(cfg.tie_order, *sorted_share(item_ids, item_codes, user_codes, ts))

    stats = {
        "raw_rows": int(raw_rows),
        "duplicates_dropped": dropped["repeated_user_item"],
        "repeats": repeats,
        "ties": ties,
        "dropped": dropped,
        "interactions": len(item_codes),
        "users": len(user_ids),
        "items": len(item_ids),
        "mean_history": float(lengths.mean()),
        "files": len(frames),
    }
    data = Interactions(
        user_ids=user_ids,
        item_ids=item_ids,
        offsets=offsets,
        items=(item_codes + 1).astype(np.int64),
        timestamps=ts,
        fingerprint=_fingerprint(user_ids, item_ids, user_codes, item_codes, ts),
        stats=stats,
    )
    if items_uri:
        data.catalog = load_catalog(items_uri, data.item_ids)
        stats["catalog_rows"] = len(data.catalog)
    log.info("data %s", stats)
    _say_dropped(raw_rows, dropped)
    return data


def choose_repeats(setting: str, repeated: int, rows: int) -> dict:
    """{"mode": "keep" | "drop", "share", "chosen_by", "why"}: what to do with the `repeated`
    rows (a (user, item) pair seen before) of `rows`. With auto the job says what it chose
    and why, on stderr (stdout stays machine-readable)."""
    share = repeated / max(rows, 1)
    figure = f"{share:.1%} of {rows:,} rows repeat a (user, item) pair"
    if setting != "auto":
        mode, why = setting, f"repeats={setting} was set; {figure}"
    elif share >= REPEATS_AUTO_SHARE:
        mode = "keep"
        why = f"{figure}, at least {REPEATS_AUTO_SHARE:.0%}: a repeat-consumption log"
    elif repeated == 0:
        mode, why = "drop", f"{figure}: each item is taken once"
    else:  # some repeats, under the line: say so rather than call it a shop outright
        mode = "drop"
        why = (
            f"{figure}, under {REPEATS_AUTO_SHARE:.0%}: trained as a shop, seen items never "
            "recommended; set repeats=keep if your users come back to items (UCI Online "
            "Retail, 31%: half its next purchases are re-purchases, docs/experiments.md)"
        )
    if setting == "auto":
        print(f"repeats: auto chose {mode} ({why})", file=sys.stderr, flush=True)
    chosen_by = "auto" if setting == "auto" else "set"
    return {"mode": mode, "share": round(share, 6), "chosen_by": chosen_by, "why": why}


def _say_dropped(raw_rows: int, dropped: dict[str, int]) -> None:
    """What the loader removed, on the console (not only in a log line): a log of repeated
    consumption can lose most of its rows here, and the user must know."""
    why = {
        "other_event_types": "rows of event types not in event_types",
        "repeated_user_item": "repeated (user, item) rows (the first is kept; seen items are "
        "never recommended)",
        "short_history_rows": "rows of users with fewer than min_user_interactions",
    }
    parts = [f"{dropped[k]:,} {text}" for k, text in why.items() if dropped.get(k)]
    if parts:
        share = sum(dropped.get(k, 0) for k in why) / max(raw_rows, 1)
        # stderr: stdout stays machine-readable (epoch lines, benchmarks' JSON)
        print(
            f"data: dropped {share:.1%} of {raw_rows:,} rows: " + "; ".join(parts),
            file=sys.stderr,
            flush=True,
        )


def _check_enough(uri: str, cfg: DataConfig, n: int, lengths: np.ndarray) -> None:
    users_with_two = int((lengths >= 2).sum())
    if n < cfg.min_interactions or users_with_two < cfg.min_users:
        raise DataError(
            f"{uri}: too little data to train: {n} interactions and {users_with_two} users with "
            f"at least 2 interactions after cleaning (need >= {cfg.min_interactions} and >= "
            f"{cfg.min_users}; see min_interactions / min_users)"
        )


def load_catalog(uri: str, vocabulary: np.ndarray) -> pd.DataFrame:
    """The optional item catalog (item_id + any columns), restricted to known items."""
    frames = []
    for f in data_files(uri):
        df = read_table(f)
        if "item_id" not in df.columns:
            raise DataError(
                f"{f}: missing column 'item_id' in the item catalog; found "
                f"{_found_columns(df, ['item_id', 'title', 'genres', 'category'])}"
            )
        df = df.assign(item_id=read_ids(df, "item_id", f))
        dup = df["item_id"].duplicated().to_numpy()
        if dup.any():
            first = int(np.flatnonzero(dup)[0])
            raise DataError(f"{f}: column 'item_id' repeats an id at {_row_label(f, first)}")
        frames.append(df)
    catalog = pd.concat(frames, ignore_index=True).set_index("item_id")
    catalog = catalog[~catalog.index.duplicated()]
    known = pd.Index(vocabulary, name="item_id")
    matched = int(known.isin(catalog.index).sum())
    if not matched:  # ids written differently ("17" against "0017"): say so, not train blind
        sample = ", ".join(repr(str(i)[:32]) for i in catalog.index[:3])
        raise DataError(
            f"{uri}: none of the catalog's {len(catalog)} item ids is an item of the "
            f"interactions (catalog: {sample or 'no rows'}; interactions: "
            f"{', '.join(repr(str(i)[:32]) for i in known[:3])}); ids must match exactly"
        )
    if matched < 0.5 * len(known):
        log.warning(
            "item catalog %s describes %d of the %d items (%.0f%%): the rest have no title, "
            "categories or content",
            uri,
            matched,
            len(known),
            100 * matched / len(known),
        )
    return catalog.reindex(known)
