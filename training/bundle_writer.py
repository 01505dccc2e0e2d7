"""Write the serving bundle (format: lmrec.bundle) into the model directory.

The model directory is the bundle: serving files, records (metrics, report, teacher
checkpoint) and, last of all, manifest.json with every file's size and sha256. A reader that
finds a manifest therefore finds a complete bundle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lmrec import bundle as fmt
from lmrec import items as items_fmt
from lmrec import ivf
from lmrec import transitions as transitions_fmt
from lmrec.history import HistoryExpert
from lmrec.student import dequantize_items, left_pad
from safetensors.numpy import save_file

from training.baselines import recent_counts
from training.data import Interactions
from training.model import SASRec
from training.new_items import content_only_rows

CATEGORY_CANDIDATES = ("genres", "genre", "category", "categories")
# From this many items on, the bundle carries an IVF index (lmrec.ivf): scoring the whole
# table then costs more than 1 ms a request on one core and grows with the catalog.
ANN_MIN_ITEMS = 100_000
ANN_TARGET_RECALL = 0.97  # chosen on the writer's queries; the serving bar is 0.95
CALIBRATION_QUERIES = 256


def quantize_items(table: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """The item table as float32, float16, or int8 with one float32 scale per row."""
    if dtype == "float32":
        return {"item_emb.weight": table.astype(np.float32)}
    if dtype == "float16":
        return {"item_emb.weight": table.astype(np.float16)}
    if dtype == "int8":
        scale = np.abs(table).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(table / scale[:, None]), -127, 127).astype(np.int8)
        return {"item_emb.weight": q, "item_emb.scale": scale.astype(np.float32)}
    raise ValueError(f"item_table_dtype must be float32, float16 or int8, not {dtype!r}")


def serving_weights(student: SASRec, item_dtype: str) -> dict[str, np.ndarray]:
    """The student's weights as the bundle stores them (what lmrec.student serves). With
    content, item_emb.weight holds each item's whole vector (id + content part), so known
    items serve as before, and content.weight the content table a new item's vector is
    computed from (lmrec.content.vectors)."""
    weights = {k: v.detach().cpu().float().numpy() for k, v in student.state_dict().items()}
    was_training = student.training
    student.eval()
    with torch.no_grad():
        table = student.item_table().detach().cpu().float().numpy()
    student.train(was_training)
    weights.pop("item_emb.weight")
    weights.update(quantize_items(table, item_dtype))
    if "content.weight" in weights and item_dtype != "float32":
        weights["content.weight"] = weights["content.weight"].astype(np.float16)
    return weights


def _json_value(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)  # lists, datetimes, ... from Parquet catalogs


def catalog_columns(data: Interactions, category_column: str) -> tuple[dict[str, list], str | None]:
    """Catalog columns aligned with the vocabulary; the category column split on '|'."""
    if data.catalog is None:
        return {}, None
    cat = category_column or next((c for c in CATEGORY_CANDIDATES if c in data.catalog), None)
    columns: dict[str, list] = {}
    for name in data.catalog.columns:
        values = [_json_value(v) for v in data.catalog[name].tolist()]
        if name == cat:
            values = [
                [p.strip() for p in str(v).split("|") if p.strip()] if v else [] for v in values
            ]
        columns[str(name)] = values
    return columns, cat


def user_queries(student: SASRec, data: Interactions, n: int, seed: int = 0) -> np.ndarray:
    """The student's vectors for a sample of the data's users: the queries serving will see."""
    rng = np.random.default_rng(seed)
    users = rng.choice(data.n_users, size=min(n, data.n_users), replace=False)
    x = torch.from_numpy(left_pad([data.sequence(int(u)) for u in users], student.cfg.max_len))
    was_training = student.training
    student.eval()
    with torch.no_grad():
        hidden = student.encode(x, last_only=True)[:, -1].float().numpy()
    student.train(was_training)
    return hidden


def write_index(out: Path, student: SASRec, data: Interactions, table: np.ndarray) -> dict:
    """Build the IVF index of the (stored-precision) item table and choose its probes on the
    student's own queries; write it only if it reaches the recall target while scoring at
    most 1/8 of the catalog (else whole-table scoring is as fast: int8 at 671k items x 48
    takes 7 ms on one core). Returns what the manifest records."""
    began = time.perf_counter()
    index = ivf.build(table)
    most = max(1, index.n_lists // 8)
    n_probe, recall = ivf.calibrate(
        index, table, user_queries(student, data, CALIBRATION_QUERIES), ANN_TARGET_RECALL, most
    )
    unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    probes = unit[np.random.default_rng(1).integers(1, len(unit), size=CALIBRATION_QUERIES)]
    n_probe_similar, recall_similar = ivf.calibrate(index, unit, probes, ANN_TARGET_RECALL, most)
    record = {
        "kind": "ivf",
        "n_lists": index.n_lists,
        "n_probe": n_probe,
        "n_probe_similar": n_probe_similar,
        "recall@10": round(recall, 4),
        "recall@10_similar": round(recall_similar, 4),
        "protocol": f"{CALIBRATION_QUERIES} sampled users' vectors (similar: items) vs exact "
        "top-10 over the whole table, in sample",
        "build_seconds": round(time.perf_counter() - began, 2),
    }
    if recall_similar < ANN_TARGET_RECALL:  # similar items then score the whole table
        n_probe_similar = record["n_probe_similar"] = index.n_lists
    if recall < ANN_TARGET_RECALL:
        record["kind"] = "none"
        record["reason"] = (
            f"recall@10 below {ANN_TARGET_RECALL} with {most} of {index.n_lists} lists probed: "
            "whole-table scoring"
        )
        return record
    index.n_probe, index.n_probe_similar = n_probe, n_probe_similar
    ivf.write(out / ivf.INDEX_FILE, index)
    return record


def model_version(created: datetime, fingerprint: str, config: dict) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return f"{created:%Y%m%dT%H%M%SZ}-{fingerprint.removeprefix('sha256:')[:8]}-{digest[:6]}"


def write_bundle(
    out: Path,
    student: SASRec,
    data: Interactions,
    document: dict,
    item_dtype: str,
    category_column: str = "",
    ann_min_items: int = ANN_MIN_ITEMS,
    transitions: transitions_fmt.Transitions | None = None,
    history: HistoryExpert | None = None,
) -> dict:
    """The bundle serving `student`: the small model the summary's served record names
    ({"model", "transitions_weight"}; a document without one serves "student"), its
    weights under that model's own file name."""
    weight = transitions.weight if transitions is not None else 0.0
    served = document.get("summary", {}).get("served") or {"model": "student"}
    served = {"model": served["model"], "transitions_weight": weight}
    if history is not None:
        served["history_weight"] = history.weight
    served["weights"] = fmt.weights_name(served["model"])
    weights = serving_weights(student, item_dtype)
    save_file(weights, str(out / served["weights"]))

    columns, cat = catalog_columns(data, category_column)
    items_fmt.write(out / fmt.ITEMS, data.item_ids.tolist(), columns, cat)
    index_record = None
    if data.n_items >= ann_min_items:
        index_record = write_index(out, student, data, dequantize_items(weights))
    # No user ids and no histories here: a bundle holds items and aggregate counts only
    # (histories go to the user store, training/histories.py).
    popularity = np.bincount(data.items, minlength=data.n_items + 1).astype(np.float32)
    np.save(out / fmt.POPULARITY, popularity)
    # What is popular now at the data's end: GET /v1/trending's prior, and so the trending
    # cold start before live events arrive, is the estimator the job's cold-start choice
    # measured (training/cold_start.py), not all-time counts. 4 bytes an item (2.7 MB at 671k).
    recent, _ = recent_counts(data.timestamps, data.items, data.n_items)
    np.save(out / fmt.RECENT_POPULARITY, recent)
    if transitions is not None:  # counts of pairs made by several users, no user ids
        transitions_fmt.write(out / transitions_fmt.FILE, transitions)

    created = datetime.now(UTC)
    config = dataclasses.asdict(student.cfg)
    metrics = document["metrics"]
    manifest: dict[str, Any] = {
        "schema_version": fmt.SCHEMA_VERSION,
        "model_version": model_version(created, data.fingerprint, document["config"]),
        "created_at": created.isoformat(timespec="seconds"),
        "data_fingerprint": data.fingerprint,
        "data_read_at": data.stats.get("read_at"),
        "model": {
            "architecture": "sasrec",
            "config": config,
            "item_table_dtype": item_dtype,
            "torch": torch.__version__,
            "item_index": index_record,
        },
        "catalog": {
            "n_items": data.n_items,
            "n_users": data.n_users,  # a count: the ids themselves stay out of the bundle
            "columns": sorted(columns),
            "category_column": cat,
        },
        # The headline figures, so a quality gate need not open metrics.json.
        "metrics": {name: {"test": metrics[name]["test"]} for name in metrics},
        # Which model this bundle serves (the job picks the better small model), with its
        # transition weight (0: the model alone) and its weights file.
        "served": served,
        "files": {},
    }
    summary = document.get("summary", {})
    repeats = data.stats.get("repeats")
    if repeats:  # what the data taught: serving's default exclude_seen (lmrec.bundle)
        manifest["repeats"] = {"mode": repeats["mode"], "share": repeats["share"]}
    if summary.get("split"):
        manifest["split"] = summary["split"]
    if history is not None:
        manifest["history_expert"] = history.parameters()
    if summary.get("distillation"):  # the served model against its teacher, paired
        manifest["distillation"] = summary["distillation"]
    if summary.get("cold_start"):  # serving's answer for no history under LMREC_COLD_START=auto
        manifest["cold_start"] = {"choice": summary["cold_start"]["choice"]}
    champion = summary.get("champion")
    if champion is not None:  # production scored on this model's test users (the gate's input)
        manifest["champion"] = champion
    if data.content is not None and student.content is not None:
        manifest["content"] = data.content.spec.to_json()
        new_items = summary.get("new_items")
        if new_items is not None:  # the lift of a new item's score (lmrec.content)
            manifest["new_items"] = {"offset": new_items["offset"]}
            rows = content_only_rows(student, (data.items, data.timestamps))
            if new_items["offset"] and len(rows):  # bundle rows of content alone, lifted too
                manifest["new_items"]["rows"] = rows.tolist()
    if transitions is not None:
        record = document.get("summary", {}).get("transitions", {})
        manifest["transitions"] = transitions.parameters() | {
            "pairs": len(transitions.cols),
            "min_users": record.get("min_users"),
            "per_item": record.get("per_item"),
        }
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != fmt.MANIFEST):
        manifest["files"][str(path.relative_to(out))] = {
            "size": path.stat().st_size,
            "sha256": fmt.sha256_file(path),
        }
    tmp = out / (fmt.MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / fmt.MANIFEST)
    return manifest


def requantize(src: Path, dst: Path, item_dtype: str) -> dict:
    """A copy of a bundle with its item table stored as `item_dtype` (for size/quality
    comparisons); the manifest is rewritten with the new sizes and checksums."""
    import shutil

    from safetensors.numpy import load_file

    shutil.copytree(src, dst, dirs_exist_ok=True)
    manifest = json.loads((src / fmt.MANIFEST).read_text())
    name = fmt.weights_file(manifest)
    weights = load_file(str(src / name))
    table = dequantize_items(weights)
    weights.pop("item_emb.scale", None)
    weights.pop("item_emb.weight")
    weights.update(quantize_items(table, item_dtype))
    save_file(weights, str(dst / name))
    manifest["model"]["item_table_dtype"] = item_dtype
    path = dst / name
    manifest["files"][name] = {"size": path.stat().st_size, "sha256": fmt.sha256_file(path)}
    (dst / fmt.MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest
