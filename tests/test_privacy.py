"""A model artifact holds no personal data, and moving histories out of the bundle changes no
user's recommendations."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from lmrec.recommend import Filters, Recommender
from lmrec.userstore import open_user_store

from tests.conftest import TINY_HP, fill_user_store, train_bundle, write_csv
from training.config import DataConfig
from training.data import load_interactions


def plain_bytes(name: str, raw: bytes) -> bytes:
    """The bytes a reader would see: gzip, tar and zip (npz) opened, recursively, so an id
    cannot hide inside compression."""
    if raw[:2] == b"\x1f\x8b":
        return plain_bytes(name.removesuffix(".gz"), gzip.decompress(raw))
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            return b"".join(plain_bytes(n, z.read(n)) for n in z.namelist())
    if len(raw) > 262 and raw[257:262] == b"ustar":
        out = []
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m)
                out.append(m.name.encode() + (plain_bytes(m.name, f.read()) if f else b""))
        return b"".join(out)
    return raw


def files_holding(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """{file: [ids found]} over every file below root."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = plain_bytes(path.name, path.read_bytes())
        hits = [n for n in needles if n.encode() in data]
        if hits:
            found[str(path.relative_to(root))] = hits
    return found


def test_no_bundle_file_contains_any_user_id(tmp_path):
    # user ids that cannot occur by accident in item ids, numbers or JSON keys
    rng = np.random.default_rng(3)
    users = [f"usr-Qz{u:03d}x" for u in range(120)]
    rows = []
    for u, user in enumerate(users):
        for j in range(15):
            rows.append([user, f"i{int(rng.integers(60))}", 1_600_000_000 + 100 * u + j])
    data = write_csv(tmp_path / "d.csv", ["user_id", "item_id", "timestamp"], rows)
    out = train_bundle(["--data", str(data)], tmp_path / "model", {**TINY_HP, "refit": "true"})
    assert (out / "manifest.json").is_file() and (out / "student.safetensors").is_file()
    # the check can see an id: the training data holds all of them
    assert len(files_holding(data.parent, users)["d.csv"]) == len(users)
    assert files_holding(out, users) == {}
    assert not any(p.name.startswith("user") for p in out.iterdir())
    # the bundle still serves: items only, histories come from the user store
    rec = Recommender.load(str(out))
    assert len(rec.recommend(rec.catalog.rows(["i1", "i2"])[0], Filters(k=5)).items) == 5


def test_same_recommendations_before_and_after_the_move(tmp_path, trained_bundle, ml100k_small):
    """Before: the bundle carried each user's whole history (data.items, in the bundle's own
    rows). After: the history comes from the user store as item ids. Same model, same
    history -> the same items, scores and reasons, for every user of the MovieLens sample."""
    inter = ml100k_small[0]
    data = load_interactions(str(inter), DataConfig())
    rec = Recommender.load(str(trained_bundle))
    assert list(rec.catalog.item_ids) == data.item_ids.tolist()  # rows were the data's codes
    uri = f"sqlite://{tmp_path / 'users.db'}"
    assert fill_user_store(uri, inter, tmp_path)["written"] == data.n_users
    users = open_user_store(uri)
    filters = Filters(k=10, exclude_categories=["Horror"])
    before = rec.recommend_many(
        [data.sequence(u) for u in range(data.n_users)], [filters] * data.n_users
    )
    after_histories = [
        rec.catalog.rows(users.recent(str(data.user_ids[u]), 50).items())[0]
        for u in range(data.n_users)
    ]
    after = rec.recommend_many(after_histories, [filters] * data.n_users)
    assert max(data.lengths()) > 200  # long histories are in the comparison
    for b, a in zip(before, after, strict=True):
        assert b.strategy == a.strategy == "personalized"
        assert [(r.item_id, r.score, r.reason) for r in b.items] == [
            (r.item_id, r.score, r.reason) for r in a.items
        ]
