"""Bundles with a content part for the live item tests, until training writes them: the
bundle contract's `content.weight` and manifest["content"], added to a trained bundle.

The table is seeded noise, except the rows of one chosen text, which are set so that the
text's content vector is `gain` x the item embedding of a chosen catalog item: what a
trained content part does for a text that reads like that item. Everything downstream (the
featuriser, the bundle loader, the runtime) is the real code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from lmrec import bundle as fmt
from lmrec import content
from lmrec.recommend import Recommender

SPEC = content.ContentSpec(text=("title",), categorical=("genres",), n_buckets=4096)
NEW_TITLE = "Zyxxor Quantum Saga"  # words no catalog title holds
NEW_FIELDS = {"title": NEW_TITLE, "genres": "Sci-Fi|Adventure", "release_year": 2027}


def with_content(
    src: Path, out: Path, target_row: int | None, gain: float = 1.5, suffix: str = "c"
) -> Path:
    """A copy of bundle `src` with a content table; NEW_FIELDS' vector = gain x row
    `target_row` of the item table (None: noise only). Its version gets `suffix`."""
    shutil.copytree(src, out)
    manifest = json.loads((out / fmt.MANIFEST).read_text())
    name = fmt.weights_file(manifest)
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(out / name))
    d = int(manifest["model"]["config"]["d_model"])
    table = np.random.default_rng(7).normal(0, 0.01, (SPEC.n_buckets, d)).astype(np.float32)
    if target_row is not None:
        feats = content.featurise(SPEC, [NEW_FIELDS])
        from lmrec.student import dequantize_items

        row = dequantize_items(weights)[target_row]
        table[feats.indices] = gain * row / float(feats.weights.sum())
    weights["content.weight"] = table
    save_file(weights, str(out / name))
    manifest["content"] = SPEC.to_json()
    manifest["model_version"] = f"{manifest['model_version']}-{suffix}"
    for file in (name,):
        path = out / file
        manifest["files"][file] = {"size": path.stat().st_size, "sha256": fmt.sha256_file(path)}
    (out / fmt.MANIFEST).write_text(json.dumps(manifest))
    return out


def without_content(src: Path, out: Path) -> Path:
    """A copy of bundle `src` with no content part (as a model trained with content=off
    ships): no content.weight, no manifest "content"."""
    shutil.copytree(src, out)
    manifest = json.loads((out / fmt.MANIFEST).read_text())
    name = fmt.weights_file(manifest)
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(out / name))
    weights.pop("content.weight", None)
    save_file(weights, str(out / name))
    manifest.pop("content", None)
    path = out / name
    manifest["files"][name] = {"size": path.stat().st_size, "sha256": fmt.sha256_file(path)}
    (out / fmt.MANIFEST).write_text(json.dumps(manifest))
    return out


def top_item(bundle_dir: Path, history: list[str]) -> tuple[int, str, float]:
    """The row and id the model ranks first for this history, and the gain that puts a
    vector along that row's above it: the served score may hold a transitions boost, which
    a new item (no transitions yet) does not get."""
    rec = Recommender.load(bundle_dir)
    rows, _ = rec.catalog.rows(history)
    result = rec.recommend(rows)
    best = result.items[0]
    assert result.query is not None
    raw = float(rec.model.embed(np.asarray([best.row]))[0] @ result.query)
    return best.row, best.item_id, 1.5 * max(1.0, best.score / raw)


HISTORY = [str(i) for i in range(1, 11)]
