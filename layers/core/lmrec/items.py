"""The item catalog of a bundle in compact arrays: ids, display fields and categories.

One safetensors file (no pickle) holds, for n items in model row order (row r <-> index r - 1):

  id_bytes, id_offsets        the ids, UTF-8, concatenated; id r is bytes[off[r-1]:off[r]]
  id_hash, id_hash_rows       a 64-bit hash of every id, sorted, and the row of each: the
                              id -> row lookup is a binary search (np.searchsorted), then a
                              byte comparison that settles any hash collision
  field_bytes, field_offsets  per item, a JSON array of its display columns (title, year, ...)
                              in the order the metadata names them; decoded only for the
                              items a request returns
  category_codes, category_offsets          per item, its category codes (CSR)
  category_rows, category_row_offsets       per category code, its rows (CSR): filters
  metadata: format, columns, category_column, categories (the code -> name vocabulary)

Loading is a few array reads: no Python object per item (items.json parsed into lists and
dicts took 2.0 s at 671k items, the id -> row dict another 1.0-1.6 s).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

FORMAT = "lmrec-items/1"
_EMPTY = np.empty(0, dtype=np.int64)


def id_hash(raw: bytes) -> int:
    """A stable 64-bit hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


def _offsets(lengths: list[int]) -> np.ndarray:
    """Cumulative offsets, int32 while they fit (half the bytes of int64 per item)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets.astype(np.int32) if offsets[-1] < 2**31 else offsets


def _blob(values: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = _offsets([len(v) for v in values])
    data = np.frombuffer(b"".join(values), dtype=np.uint8)
    return (data if len(data) else np.zeros(0, np.uint8)), offsets


def _csr(groups: Sequence[Sequence[int]], dtype=np.int32) -> tuple[np.ndarray, np.ndarray]:
    offsets = _offsets([len(g) for g in groups])
    flat = np.fromiter((x for g in groups for x in g), dtype=dtype, count=int(offsets[-1]))
    return flat, offsets


def encode(
    item_ids: Sequence[str], columns: dict[str, list], category_column: str | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays and metadata of an item file (for training's bundle writer).

    `columns` maps a column name to values aligned with `item_ids` (JSON-able scalars); the
    category column's values are lists of category names."""
    raw_ids = [str(i).encode() for i in item_ids]
    id_bytes, id_offsets = _blob(raw_ids)
    hashes = np.fromiter((id_hash(r) for r in raw_ids), dtype=np.uint64, count=len(raw_ids))
    order = np.argsort(hashes, kind="stable")
    fields = [name for name in columns if name != category_column]
    rows_json = [
        json.dumps([columns[name][i] for name in fields], separators=(",", ":")).encode()
        for i in range(len(raw_ids))
    ]
    field_bytes, field_offsets = _blob(rows_json if fields else [])
    per_item = columns.get(category_column or "", [[] for _ in raw_ids])
    vocabulary = sorted({c for cats in per_item for c in (cats or ())})
    code_of = {c: i for i, c in enumerate(vocabulary)}
    codes, cat_offsets = _csr([[code_of[c] for c in (cats or ())] for cats in per_item])
    rows_of: list[list[int]] = [[] for _ in vocabulary]
    for row, cats in enumerate(per_item, start=1):
        for c in dict.fromkeys(cats or ()):  # a category named twice counts once
            rows_of[code_of[c]].append(row)
    cat_rows, cat_row_offsets = _csr(rows_of)
    arrays = {
        "id_bytes": id_bytes,
        "id_offsets": id_offsets,
        "id_hash": hashes[order],
        "id_hash_rows": (order + 1).astype(np.int32),
        "field_bytes": field_bytes,
        "field_offsets": field_offsets,
        "category_codes": codes,
        "category_offsets": cat_offsets,
        "category_rows": cat_rows,
        "category_row_offsets": cat_row_offsets,
    }
    metadata = {
        "format": FORMAT,
        "columns": json.dumps(list(columns)),  # every column, in the catalog's order
        "category_column": category_column or "",
        "categories": json.dumps(vocabulary),
    }
    return arrays, metadata


def write(
    path: Path, item_ids: Sequence[str], columns: dict[str, list], category_column: str | None
) -> None:
    from safetensors.numpy import save_file

    arrays, metadata = encode(item_ids, columns, category_column)
    save_file(arrays, str(path), metadata=metadata)


class ItemIds(Sequence[str]):
    """The ids as a read-only sequence (index = row - 1), decoded one at a time on access."""

    def __init__(self, data: bytes, offsets: np.ndarray):
        self.data, self.offsets = data, offsets  # checked by ItemCatalog before any lookup

    def __len__(self) -> int:
        return max(0, len(self.offsets) - 1)

    def raw(self, index: int) -> bytes:
        return self.data[int(self.offsets[index]) : int(self.offsets[index + 1])]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.raw(index).decode()

    def take(self, indices: Sequence[int]) -> list[str]:
        """The ids at these indices (row - 1), decoded in one pass."""
        at = np.asarray(indices, dtype=np.int64)
        lo, hi = self.offsets[at].tolist(), self.offsets[at + 1].tolist()
        return [self.data[a:b].decode() for a, b in zip(lo, hi, strict=True)]

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


# name -> (dtype kinds, dimensions) of every array of the format: "u1" is uint8 exactly
_ARRAY_TYPES = {
    "id_bytes": "u1",
    "id_offsets": "iu",
    "id_hash": "u8",
    "id_hash_rows": "iu",
    "field_bytes": "u1",
    "field_offsets": "iu",
    "category_codes": "iu",
    "category_offsets": "iu",
    "category_rows": "iu",
    "category_row_offsets": "iu",
}


def _type_problem(arrays: dict[str, np.ndarray]) -> str | None:
    for name, kind in _ARRAY_TYPES.items():
        array = arrays.get(name)
        if array is None:
            return f"{name} is missing"
        exact = {"u1": np.uint8, "u8": np.uint64}.get(kind)
        ok = array.dtype == exact if exact else array.dtype.kind in kind
        if array.ndim != 1 or not ok:
            return f"{name} is {array.dtype} {array.shape}, not a 1-D array of its type"
    return None


def _offsets_problem(offsets: np.ndarray, length: int) -> bool:
    """True unless `offsets` are CSR offsets over `length` values: 0 first, length last,
    never decreasing."""
    return (
        len(offsets) < 1
        or offsets[0] != 0
        or offsets[-1] != length
        or bool((np.diff(offsets) < 0).any())
    )


def _text_problem(data: bytes, offsets: np.ndarray, what: str) -> str | None:
    """Strings as UTF-8 bytes + offsets: each slice decodes, because the whole blob does and
    no offset points inside a character (at a continuation byte, 0b10xxxxxx)."""
    if _offsets_problem(offsets, len(data)):
        return f"{what}: offsets do not index their bytes"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return f"{what}: not UTF-8"
    inner = offsets[1:-1]
    inner = inner[inner < len(data)]
    if len(inner) and ((np.frombuffer(data, np.uint8)[inner] & 0xC0) == 0x80).any():
        return f"{what}: an offset splits a character"
    return None


def _names(metadata: dict[str, str], key: str) -> list[str]:
    value = json.loads(metadata[key])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"item file metadata: {key} must be a list of names")
    return value


class ItemCatalog:
    """Id <-> row lookups, display fields and category rows over the compact arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], metadata: dict[str, str]):
        if metadata.get("format") != FORMAT:
            raise ValueError(f"unknown item file format {metadata.get('format')!r}")
        problem = _type_problem(arrays)
        if problem:
            raise ValueError(problem)
        self.item_ids = ItemIds(arrays["id_bytes"].tobytes(), arrays["id_offsets"])
        self._hash = arrays["id_hash"]
        self._hash_rows = arrays["id_hash_rows"].astype(np.int64)
        self._fields = arrays["field_bytes"].tobytes()
        self._field_off = arrays["field_offsets"]
        self._cat_codes, self._cat_off = arrays["category_codes"], arrays["category_offsets"]
        self._cat_rows = arrays["category_rows"].astype(np.int64)
        self._cat_row_off = arrays["category_row_offsets"]
        self.columns: list[str] = _names(metadata, "columns")
        self.category_column: str | None = metadata.get("category_column") or None
        self._stored = [c for c in self.columns if c != self.category_column]  # in the JSON
        self.categories: list[str] = _names(metadata, "categories")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("category names repeat")
        self._code_of = {c: i for i, c in enumerate(self.categories)}  # one per category
        self._check()

    def _check(self) -> None:
        """Every array a lookup or a reply indexes, checked once at load and vectorised (no
        Python step per item), so that no request indexes past an array or decodes bytes
        that are not text."""
        problem = _text_problem(self.item_ids.data, self.item_ids.offsets, "item ids")
        if problem:  # the other checks count and read the ids
            raise ValueError(problem)
        found = [self._id_index_problem(), self._fields_problem(), *self._category_problems()]
        problems = [p for p in found if p]
        if problems:
            raise ValueError("; ".join(problems))

    def _id_index_problem(self) -> str | None:
        n = len(self.item_ids)
        if self._hash.shape != (n,) or self._hash_rows.shape != (n,):
            return "the id index does not match the ids"
        if (self._hash[1:] < self._hash[:-1]).any():
            return "the id index is not sorted"
        if n and (
            self._hash_rows.min() < 1
            or self._hash_rows.max() > n
            or not (np.bincount(self._hash_rows, minlength=n + 1)[1:] == 1).all()
        ):
            return "the id index is not a permutation of the rows"
        if any(  # equal ids hash equal; equal hashes are rare and compared as bytes
            self.item_ids.raw(int(self._hash_rows[i]) - 1)
            == self.item_ids.raw(int(self._hash_rows[i + 1]) - 1)
            for i in np.flatnonzero(self._hash[1:] == self._hash[:-1]).tolist()
        ):
            return "item ids repeat"
        return None

    def _fields_problem(self) -> str | None:
        if not self._stored:  # no display column: fields() reads no bytes
            return None
        if self._field_off.shape != (len(self.item_ids) + 1,):
            return "a catalog column does not match the item list"
        problem = _text_problem(self._fields, self._field_off, "catalog fields")
        if problem:
            return problem
        data = np.frombuffer(self._fields, np.uint8)
        lo, hi = self._field_off[:-1], self._field_off[1:]
        # each item's fields are one JSON array; its contents are decoded per reply (fields())
        if (hi <= lo).any() or (data[lo] != ord("[")).any() or (data[hi - 1] != ord("]")).any():
            return "catalog fields are not one JSON array per item"
        return None

    def _category_problems(self) -> list[str]:
        n, problems = len(self.item_ids), []
        if self._cat_off.shape != (n + 1,) or _offsets_problem(self._cat_off, len(self._cat_codes)):
            problems.append("the item categories do not match the item list")
        elif len(self._cat_codes) and (
            self._cat_codes.min() < 0 or self._cat_codes.max() >= len(self.categories)
        ):
            problems.append("an item names a category outside the vocabulary")
        shape = (len(self.categories) + 1,)
        if self._cat_row_off.shape != shape or _offsets_problem(
            self._cat_row_off, len(self._cat_rows)
        ):
            problems.append("the category index does not match its vocabulary")
        elif len(self._cat_rows) and (self._cat_rows.min() < 1 or self._cat_rows.max() > n):
            problems.append("the category index names rows outside the catalog")
        return problems

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def row(self, item_id: str) -> int | None:
        """The row of an id (1..n), or None if the catalog does not hold it."""
        raw = item_id.encode()
        h = np.uint64(id_hash(raw))
        i = int(np.searchsorted(self._hash, h))
        while i < len(self._hash) and self._hash[i] == h:  # equal hashes: compare bytes
            row = int(self._hash_rows[i])
            if self.item_ids.raw(row - 1) == raw:
                return row
            i += 1
        return None

    def lookup(self, item_ids: Sequence[str]) -> np.ndarray:
        """The row of each id, in the order given: (len(ids),) int64, 0 (the padding row)
        for an id the catalog does not hold."""
        if not item_ids:
            return _EMPTY
        raws = [i.encode() for i in item_ids]
        if not len(self._hash):
            return np.zeros(len(raws), np.int64)
        hashes = np.fromiter((id_hash(r) for r in raws), dtype=np.uint64, count=len(raws))
        at = np.minimum(np.searchsorted(self._hash, hashes), len(self._hash) - 1)
        rows = self._hash_rows[at]
        hit = self._hash[at] == hashes
        found = []
        for item, raw, row, ok in zip(item_ids, raws, rows.tolist(), hit.tolist(), strict=True):
            if ok and self.item_ids.raw(row - 1) == raw:
                found.append(row)
            elif ok:  # a hash shared by two ids: settle it by bytes
                found.append(self.row(item) or 0)
            else:
                found.append(0)
        return np.asarray(found, dtype=np.int64)

    def rows(self, item_ids: Iterable[str]) -> tuple[np.ndarray, list[str]]:
        """Known rows (in order) and the ids that are not in the catalog."""
        ids = list(item_ids)
        rows = self.lookup(ids)
        unknown = [ids[i] for i in np.flatnonzero(rows == 0).tolist()]
        return rows[rows != 0], unknown

    def in_categories(self, rows: np.ndarray, names: Iterable[str]) -> np.ndarray:
        """(len(rows),) bool: which of these rows are in any of the named categories. Reads
        only these rows' codes, not the categories' member lists (which can be the catalog)."""
        codes = [self._code_of[n] for n in names if n in self._code_of]
        if not codes or not len(rows):
            return np.zeros(len(rows), bool)
        found, n = self._codes_of(rows)
        member = np.isin(found, codes)
        return np.bincount(np.repeat(np.arange(len(rows)), n), member, len(rows)) > 0

    def _codes_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The category codes of these rows, concatenated, and how many each row has."""
        lo = self._cat_off[rows - 1].astype(np.int64)
        n = self._cat_off[rows].astype(np.int64) - lo
        at = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())
        return self._cat_codes[at], n

    def fields(self, row: int) -> dict:
        """The item's display columns and its categories, decoded for this one row."""
        stored = self._stored_fields(row) if self._stored else {}
        if self.category_column:
            codes = self._cat_codes[self._cat_off[row - 1] : self._cat_off[row]]
            stored[self.category_column] = [self.categories[c] for c in codes.tolist()]
        return {name: stored[name] for name in self.columns if name in stored}

    def fields_many(self, rows: Sequence[int]) -> list[dict]:
        """fields() of each row, with one JSON parse and one gather for them all (for 500
        rows, 500 fields() calls took longer than the model)."""
        stored: list[dict] = [{} for _ in rows]
        if self._stored and len(rows):
            off = self._field_off
            parts = [self._fields[int(off[r - 1]) : int(off[r])] for r in rows]
            try:
                values = json.loads(b"[" + b",".join(parts) + b"]", parse_constant=lambda _: None)
                whole = all(isinstance(v, list) and len(v) == len(self._stored) for v in values)
            except (ValueError, RecursionError):
                whole = False
            if whole:  # else some row's array is malformed: each row decoded on its own
                stored = [dict(zip(self._stored, v, strict=True)) for v in values]
            else:
                stored = [self._stored_fields(int(r)) for r in rows]
        if self.category_column and len(rows):
            codes, counts = self._codes_of(np.asarray(rows, dtype=np.int64))
            names = [self.categories[c] for c in codes.tolist()]
            end = np.cumsum(counts).tolist()
            for out, a, b in zip(stored, [0, *end[:-1]], end, strict=True):
                out[self.category_column] = names[a:b]
        return [{name: s[name] for name in self.columns if name in s} for s in stored]

    def _stored_fields(self, row: int) -> dict:
        """The row's JSON array as {column: value}. Load checks the arrays' bounds only:
        decoding every item took 2.3 s at 671k items, past the cold start's budget. So an
        item whose array does not hold one JSON value per column is returned without its
        columns rather than failing the reply; NaN and Infinity (not JSON) read as null."""
        lo, hi = int(self._field_off[row - 1]), int(self._field_off[row])
        try:
            values = json.loads(self._fields[lo:hi], parse_constant=lambda _: None)
        except (ValueError, RecursionError):
            return {}
        if not isinstance(values, list) or len(values) != len(self._stored):
            return {}
        return dict(zip(self._stored, values, strict=True))

    def has_category(self, name: str) -> bool:
        return name in self._code_of

    def category_rows(self, name: str) -> np.ndarray:
        """Rows of the items in a category (empty for an unknown category)."""
        code = self._code_of.get(name)
        if code is None:
            return _EMPTY
        return self._cat_rows[self._cat_row_off[code] : self._cat_row_off[code + 1]]


def read(path: Path) -> ItemCatalog:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as fh:
        metadata = fh.metadata() or {}
        arrays = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 - not a dict
    return ItemCatalog(arrays, metadata)
