"""Data loading and validation: every bad input fails fast with file, column and row named."""

from __future__ import annotations

import boto3
import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_rows, write_csv
from training.config import DataConfig
from training.data import DataError, load_interactions

HEADER = ["user_id", "item_id", "timestamp"]
SMALL = DataConfig(min_interactions=10, min_users=2)


def rows_csv(tmp_path, rows, header=HEADER, name="x.csv"):
    return str(write_csv(tmp_path / name, header, rows))


def good_rows(n_users=5, length=4):
    return [[f"u{u}", f"i{(u + t) % 7}", 100 + t] for u in range(n_users) for t in range(length)]


def test_ids_are_strings_and_sequences_sorted_by_time(tmp_path):
    # GIVEN rows out of time order with numeric-looking ids
    rows = [["7", "10", 3], ["7", "20", 1], ["7", "30", 2], ["8", "10", 5], ["8", "20", 4]] * 1
    rows += [[f"x{u}", f"i{t}", t] for u in range(3) for t in range(3)]
    path = rows_csv(tmp_path, rows)
    # WHEN loaded
    data = load_interactions(path, DataConfig(min_interactions=5, min_users=2))
    # THEN ids stay strings and each history is in time order
    assert data.user_ids.dtype.kind == "U" and "7" in data.user_ids
    u7 = int(np.flatnonzero(data.user_ids == "7")[0])
    history = [data.item_ids[i - 1] for i in data.sequence(u7)]
    assert history == ["20", "30", "10"]
    assert data.items.min() == 1 and data.items.max() == data.n_items


def test_ids_are_kept_exactly_as_given(tmp_path):
    # GIVEN " 1 " and "1" (two users to the API, which never strips ids)
    rows = [[uid, f"i{t}", t] for uid in ("1", " 1 ") for t in range(3)]
    rows += [[f"x{u}", f"i{t}", t] for u in range(3) for t in range(3)]
    # WHEN loaded
    data = load_interactions(rows_csv(tmp_path, rows), DataConfig(min_interactions=5, min_users=2))
    # THEN they stay two users, each id byte for byte
    assert {"1", " 1 "} <= set(data.user_ids)


def test_dedupe_keeps_first_and_fingerprint_is_stable(tmp_path):
    rows = [*good_rows(), ["u0", "i0", 500]]  # u0 saw i0 at t=100 already
    a = load_interactions(rows_csv(tmp_path, rows, name="a.csv"), SMALL)
    b = load_interactions(rows_csv(tmp_path, list(reversed(rows)), name="b.csv"), SMALL)
    assert a.stats["duplicates_dropped"] == 1
    assert a.stats["interactions"] == len(rows) - 1
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("sha256:")
    c = load_interactions(rows_csv(tmp_path, good_rows(length=5), name="c.csv"), SMALL)
    assert c.fingerprint != a.fingerprint


def test_column_names_are_mappable_and_iso_timestamps_parse(tmp_path):
    rows = [[f"u{u}", f"i{t}", f"2024-01-0{t + 1}T10:00:00Z"] for u in range(5) for t in range(3)]
    path = rows_csv(tmp_path, rows, header=["customer", "sku", "when"])
    cfg = DataConfig(
        user_col="customer", item_col="sku", time_col="when", min_interactions=5, min_users=2
    )
    data = load_interactions(path, cfg)
    assert data.n_users == 5 and data.n_items == 3
    assert data.timestamps[0] == pd.Timestamp("2024-01-01T10:00:00Z").timestamp()


def test_parquet_and_directory_of_files(tmp_path):
    rows = synthetic_rows(n_users=30, length=6)
    df = pd.DataFrame(rows, columns=HEADER)
    (tmp_path / "d").mkdir()
    df.iloc[:90].to_parquet(tmp_path / "d" / "part-0.parquet")
    df.iloc[90:].to_csv(tmp_path / "d" / "part-1.csv", index=False)
    (tmp_path / "d" / "_SUCCESS").write_text("")
    data = load_interactions(str(tmp_path / "d"), DataConfig(min_interactions=10, min_users=2))
    assert data.stats["files"] == 2 and data.stats["interactions"] == len(rows)


def test_min_user_interactions_and_event_type_filter(tmp_path):
    rows = [
        [f"u{u}", f"i{t}", t, "click" if t % 2 else "purchase"]
        for u in range(6)
        for t in range(u + 2)
    ]
    path = rows_csv(tmp_path, rows, header=[*HEADER, "event_type"])
    data = load_interactions(
        path, DataConfig(min_user_interactions=4, min_interactions=5, min_users=2)
    )
    assert set(data.user_ids) == {"u2", "u3", "u4", "u5"}
    only = load_interactions(
        path, DataConfig(event_types="purchase", min_interactions=5, min_users=2)
    )
    assert only.stats["interactions"] == sum((u + 3) // 2 for u in range(6))


@pytest.mark.parametrize(
    ("header", "rows", "expected"),
    [
        (["user_id", "item", "timestamp"], [["u", "i", 1]], "missing column(s) 'item_id'"),
        (
            HEADER,
            [["u1", "i1", 1], ["", "i2", 2]],
            "column 'user_id' has 1 null or blank id(s), first at line 3",
        ),
        (
            HEADER,
            [["u1", "i1", 1], ["u1", " ", 2]],
            "column 'item_id' has 1 null or blank id(s), first at line 3",
        ),
        (
            HEADER,
            [["u1", "i1", 1], ["u1", "i2", "yesterday"]],
            "column 'timestamp' has 1 unparsable timestamp(s), first at line 3 (expected",
        ),
        (HEADER, [["u1", "i1", "2024-13-45"]], "unparsable timestamp(s), first at line 2"),
        (  # a bad first cell: the one bad cell is named, not every number after it
            HEADER,
            [["u1", "i1", "soon"], ["u1", "i2", 2], ["u2", "i1", 3]],
            "column 'timestamp' has 1 unparsable timestamp(s), first at line 2",
        ),
        (HEADER, [], "the file has a header but no rows"),
    ],
)
def test_bad_rows_name_file_column_and_row(tmp_path, header, rows, expected):
    path = rows_csv(tmp_path, rows, header=header)
    with pytest.raises(DataError) as err:
        load_interactions(path, SMALL)
    assert expected in str(err.value)
    assert path in str(err.value)
    assert "\n" not in str(err.value)
    assert "yesterday" not in str(err.value)  # named by column and line, never by value


def test_empty_file_and_missing_path(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        load_interactions(str(empty), SMALL)
    with pytest.raises(DataError, match="no such file or directory"):
        load_interactions(str(tmp_path / "nope.csv"), SMALL)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="no data files found"):
        load_interactions(str(tmp_path / "dir"), SMALL)


def test_null_ids_in_parquet(tmp_path):
    df = pd.DataFrame({"user_id": ["a", None, "c"], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]})
    path = tmp_path / "p.parquet"
    df.to_parquet(path)
    with pytest.raises(DataError, match=r"'user_id' has 1 null or blank id\(s\), first at row 1"):
        load_interactions(str(path), SMALL)


def test_too_little_data_uses_personalize_floor(tmp_path):
    # 24 users x 41 interactions = 984 < 1000, and 24 < 25 users
    rows = [[f"u{u}", f"i{t}", t] for u in range(24) for t in range(41)]
    with pytest.raises(DataError, match="too little data to train: 984 interactions and 24 users"):
        load_interactions(rows_csv(tmp_path, rows), DataConfig())


def test_catalog_is_aligned_to_vocabulary_and_validated(tmp_path):
    path = rows_csv(tmp_path, good_rows())
    items = write_csv(
        tmp_path / "items.csv",
        ["item_id", "title"],
        [[f"i{i}", f"Title {i}"] for i in range(7)] + [["zz", "unused"]],
    )
    data = load_interactions(path, SMALL, str(items))
    assert list(data.catalog.index) == list(data.item_ids)
    assert data.catalog.loc["i3", "title"] == "Title 3"
    dup = write_csv(tmp_path / "dup.csv", ["item_id", "title"], [["i1", "a"], ["i1", "b"]])
    with pytest.raises(DataError, match="repeats an id at line 3"):
        load_interactions(path, SMALL, str(dup))
    nocol = write_csv(tmp_path / "nocol.csv", ["sku", "title"], [["i1", "a"]])
    with pytest.raises(DataError, match="missing column 'item_id' in the item catalog"):
        load_interactions(path, SMALL, str(nocol))


def test_reads_from_s3_through_aws_endpoint_url(s3_env, tmp_path):
    # GIVEN a bucket on the local S3 endpoint with two CSV parts under a prefix
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="lmrec-data")
    rows = synthetic_rows(n_users=40, length=8)
    for part in range(2):
        body = "user_id,item_id,timestamp\n" + "".join(
            f"{u},{i},{t}\n" for u, i, t in rows[part * 160 : (part + 1) * 160]
        )
        s3.put_object(Bucket="lmrec-data", Key=f"interactions/part-{part}.csv", Body=body.encode())
    s3.put_object(Bucket="lmrec-data", Key="interactions-old/x.csv", Body=b"junk")
    # WHEN loaded by URI
    data = load_interactions("s3://lmrec-data/interactions", DataConfig(min_interactions=100))
    # THEN both parts (and nothing from the sibling prefix) are read
    assert data.stats["files"] == 2 and data.stats["interactions"] == len(rows)
    with pytest.raises(DataError, match="s3://lmrec-data/missing"):
        load_interactions("s3://lmrec-data/missing", SMALL)


def test_shared_arrays_round_trip_read_only(tmp_path):
    # GIVEN data loaded once (what DDP's local rank 0 does) and saved for the host
    from training import shared_data

    rows = [[f"u{u}", f"i{(u + t) % 30}", t] for u in range(40) for t in range(5)]
    path = write_csv(tmp_path / "d.csv", ["user_id", "item_id", "timestamp"], rows)
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    shared_data.save(data, tmp_path / "shared")
    # WHEN another process of the host opens it
    other = shared_data.load(tmp_path / "shared")
    # THEN it sees the same data through read-only memory maps, not a private copy
    assert other.fingerprint == data.fingerprint and other.stats == data.stats
    for name in shared_data.ARRAYS:
        assert np.array_equal(getattr(other, name), getattr(data, name))
    assert isinstance(other.items, np.memmap) and not other.items.flags.writeable


def test_dropped_rows_are_counted_and_said(tmp_path, capsys):
    # GIVEN a log of repeated consumption: each user plays the same 3 items 4 times
    rows = [[f"u{u}", f"i{(u + t) % 3 + u % 7}", t] for u in range(30) for t in range(12)]
    path = write_csv(tmp_path / "r.csv", ["user_id", "item_id", "timestamp"], rows)
    cfg = DataConfig(min_interactions=1, min_users=1, repeats="drop")
    data = load_interactions(str(path), cfg)
    # THEN the repeats are dropped, counted in the stats and said on the console
    assert data.stats["dropped"]["repeated_user_item"] == 30 * 9
    assert "dropped 75.0% of 360 rows: 270 repeated (user, item) rows" in capsys.readouterr().err


def test_an_id_with_a_nul_is_refused_not_merged(tmp_path):
    # numpy's str arrays drop a trailing NUL: "i1\0" and "i1" would become one item
    path = tmp_path / "nul.csv"
    rows = "".join(f"u{u},i{(u + t) % 7},{100 + t}\n" for u in range(5) for t in range(4))
    path.write_text("user_id,item_id,timestamp\n" + rows + "u1,i1\x00,200\n")
    with pytest.raises(DataError, match=r"column 'item_id': 1 id\(s\) hold a NUL character"):
        load_interactions(str(path), SMALL)


def test_a_catalog_that_describes_no_item_is_refused_and_a_thin_one_warned(tmp_path, caplog):
    path = rows_csv(tmp_path, good_rows())
    # GIVEN catalog ids written differently from the interactions' ("0001" against "i1")
    other = write_csv(tmp_path / "other.csv", ["item_id", "title"], [["0001", "a"], ["7", "b"]])
    with pytest.raises(DataError, match="none of the catalog's 2 item ids is an item"):
        load_interactions(path, SMALL, str(other))
    header_only = write_csv(tmp_path / "empty.csv", ["item_id", "title"], [])
    with pytest.raises(DataError, match="catalog: no rows"):
        load_interactions(path, SMALL, str(header_only))
    # a catalog of 2 of the 7 items trains, with a warning that says how many
    thin = write_csv(tmp_path / "thin.csv", ["item_id", "title"], [["i1", "a"], ["i2", "b"]])
    with caplog.at_level("WARNING", logger="training.data"):
        data = load_interactions(path, SMALL, str(thin))
    assert data.catalog.loc["i1", "title"] == "a"
    assert "describes 2 of the 7 items (29%)" in caplog.text


def test_files_below_hidden_or_underscore_folders_are_not_data(tmp_path):
    # GIVEN a data folder where a writer left Spark's _temporary/ and a .partial/ behind
    (tmp_path / "data").mkdir()
    rows_csv(tmp_path / "data", good_rows(), name="part-0.csv")
    for folder in ("_temporary/0", ".partial"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "half.csv").write_text("user_id,item_id\nbroken")
    # THEN only the finished file is read
    data = load_interactions(str(tmp_path / "data"), SMALL)
    assert data.stats["files"] == 1 and len(data.items) == len(good_rows())
