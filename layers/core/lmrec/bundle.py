"""The model bundle: the contract between training (writer) and serving (this reader).

A bundle is a directory (local, or under an s3:// prefix) holding:

  manifest.json          schema version, model version, created_at, data fingerprint, model
                         config, metrics, the served record ({"model", "transitions_weight",
                         "weights"}), and every other file with its size and sha256
  <model>.safetensors    the served small model's weights, named by the served record (e.g.
                         student.safetensors or student_plain.safetensors; item table
                         float32, float16 or int8+scales)
  items.safetensors      item ids (row i + 1 <-> item_ids[i]) and catalog columns in compact
                         arrays (format: lmrec.items), loaded without a Python object per item
  item_index.safetensors optional, large catalogs: the IVF index of lmrec.ivf
  transitions.safetensors optional: item-to-item transition counts served beside the
                         student (lmrec.transitions; pairs of at least min_users users),
                         with their weight under the manifest's "transitions"
  popularity.npy         (n_items + 1,) float32 interaction counts, for cold-start fallbacks
  recent_popularity.npy  (optional) the same counts decayed by age from the data's newest row
                         (half-life: the span of its newest 10%): trending's prior

Optional manifest keys: "repeats" ({"mode": "keep" | "drop", "share"}: what training did
with repeated (user, item) rows, and so whether requests exclude seen items by default),
"history_expert" ({"weight", "decay", "window"}: lmrec.history, a boost of the user's own
items), "split" (the evaluation split the metrics come from), "distillation" ({"served",
"teacher", "share", "paired", "users"}: the served model's test NDCG@10 against the teacher
as it is used, on the same users; `distillation_line`), "cold_start" ({"choice": "popular" |
"trending"}: the answer for no history the job measured ahead on valid; `default_cold_start`).
  metrics.json, report.md, *.png, teacher*.*  records (teacher_2.*: an ensemble), not served
                         (nor student.safetensors, the distilled student, when student_plain
                         is served)

A bundle holds items and aggregate counts only (transition pairs of at least two users):
no user ids, no histories, nothing personal. Users' histories live
in the user store (lmrec.userstore), written from the data, not from a model.

Reading verifies the schema version and every checksum before anything is used, and loads
no pickle: JSON, safetensors and np.load(allow_pickle=False) only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmrec import history, items, ivf, store, transitions

# 3: the "served" record names the model, its transition weight and its weights file;
# 2: items.safetensors replaced items.json (weights always student.safetensors, and
# "served_model" a label such as "student_plain+transitions"). Both are read, so a
# deployed production bundle keeps serving and rollback to one still works.
SCHEMA_VERSION = 3
READABLE_SCHEMAS = (2, 3)
MANIFEST = "manifest.json"
V2_WEIGHTS = "student.safetensors"
ITEMS = "items.safetensors"
POPULARITY = "popularity.npy"
RECENT_POPULARITY = "recent_popularity.npy"
SERVING_FILES = (ITEMS, POPULARITY)  # and the served model's weights: weights_file()
# served when the manifest lists them
OPTIONAL_SERVING_FILES = (ivf.INDEX_FILE, transitions.FILE, RECENT_POPULARITY)
# metrics.json's row for a model scored with its transition boost: "<model>+transitions"
TRANSITIONS_LABEL = "+transitions"
# ... and with the user-history expert (repeats kept): "<model>[+transitions]+history"
HISTORY_LABEL = "+history"


def weights_name(model: str) -> str:
    """Each model's weights keep their own file name, in the bundle as in the records."""
    return f"{model}.safetensors"


def weights_file(manifest: dict) -> str:
    """The served model's weights file, as the manifest names it."""
    served = manifest.get("served")
    return served["weights"] if isinstance(served, dict) else V2_WEIGHTS


def metric_label(served: dict) -> str:
    """The metrics row that scores a served record: the model alone, or with its boost."""
    model = str(served["model"])
    label = model + TRANSITIONS_LABEL if served.get("transitions_weight") else model
    return label + HISTORY_LABEL if served.get("history_weight") else label


def default_exclude_seen(manifest: dict) -> bool:
    """Whether requests exclude the user's seen items unless they say: what the data taught
    (the manifest's "repeats": drop -> True, keep -> False); a bundle from before the key
    excluded them, and still does."""
    repeats = manifest.get("repeats")
    if isinstance(repeats, dict) and repeats.get("mode") in ("keep", "drop"):
        return repeats["mode"] == "drop"
    return True


def default_cold_start(manifest: dict) -> str:
    """The answer for a user with no usable history under LMREC_COLD_START=auto: what the
    training job measured on this data (the manifest's "cold_start", training/cold_start.py:
    trending only when recent popularity beat all-time popularity on valid beyond noise);
    a bundle from before the key, or with a value it does not know, serves popular."""
    record = manifest.get("cold_start")
    if isinstance(record, dict) and record.get("choice") == "trending":
        return "trending"
    return "popular"


def served_metric(manifest: dict, default: str = "student") -> str:
    """The metrics row of the model a bundle serves (schema 2: its "served_model")."""
    served = manifest.get("served")
    if isinstance(served, dict):
        return metric_label(served)
    return str(manifest.get("served_model", default))


def distillation_line(record: dict | None) -> str:
    """The share of the teacher's test NDCG@10 the served model keeps, paired on the same
    users (the training job's summary.distillation, copied into the manifest); "" without."""
    if not record:
        return ""
    mean, low, high = record["paired"]
    noise = "beyond noise" if low > 0 or high < 0 else "within noise"
    share = record["share"]
    kept = f"keeps {share:.1%} of the" if share is not None else "is measured against the"
    return (
        f"distillation: the served {record['served']} {kept} test NDCG@10 of "
        f"{record['teacher']}; paired difference {mean:+.4f} [{low:+.4f}, "
        f"{high:+.4f}] over {record['users']:,} users ({noise})"
    )


def serving_files(manifest: dict) -> tuple[str, ...]:
    optional = tuple(n for n in OPTIONAL_SERVING_FILES if n in manifest["files"])
    return (weights_file(manifest), *SERVING_FILES, *optional)


class BundleError(RuntimeError):
    """A bundle that is missing, corrupt or of an unknown format; never served."""


VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _safe_name(name: object) -> bool:
    """A file name relative to the bundle: no absolute paths, no '..', no backslashes."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Bundle:
    manifest: dict
    weights: dict[str, np.ndarray]
    catalog: items.ItemCatalog  # item ids <-> rows, display columns, categories
    popularity: np.ndarray  # (n_items + 1,) float32
    index: ivf.IVFIndex | None = None  # large catalogs: approximate top-k
    transitions: transitions.Transitions | None = None  # a boost beside the student's scores
    path: Path = field(default_factory=Path)
    history: history.HistoryExpert | None = None  # repeats kept: a boost of the user's items
    recent_popularity: np.ndarray | None = None  # (n_items + 1,) float32; older bundles: none

    @property
    def trending_prior(self) -> np.ndarray:
        """What is popular now before any live event: the data's recent counts, or (a
        bundle from before them) its all-time counts."""
        return self.popularity if self.recent_popularity is None else self.recent_popularity

    @property
    def item_ids(self) -> items.ItemIds:
        return self.catalog.item_ids

    @property
    def version(self) -> str:
        return self.manifest["model_version"]

    @property
    def config(self) -> dict:
        return self.manifest["model"]["config"]


def _parse_manifest(raw: bytes, where: str) -> dict:
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}/{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}/{MANIFEST} must be a JSON object")
    schema = manifest.get("schema_version")
    if schema not in READABLE_SCHEMAS or isinstance(schema, bool):
        raise BundleError(
            f"{where}: unsupported bundle schema_version {schema!r} (this runtime reads "
            f"{', '.join(map(str, READABLE_SCHEMAS))})"
        )
    for key in ("model_version", "created_at", "model", "files"):
        if key not in manifest:
            raise BundleError(f"{where}/{MANIFEST} has no {key!r}")
    version = manifest["model_version"]
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise BundleError(f"{where}/{MANIFEST}: model_version {version!r} is not a valid version")
    model = manifest["model"]
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict):
        raise BundleError(f"{where}/{MANIFEST}: 'model' must be an object with a 'config' object")
    files = manifest["files"]
    if not isinstance(files, dict):
        raise BundleError(f"{where}/{MANIFEST}: 'files' must be an object")
    bad = [name for name in files if not _safe_name(name)]
    if bad:
        raise BundleError(f"{where}/{MANIFEST} names unsafe file paths: {bad[:3]}")
    for name, entry in files.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
        ):
            raise BundleError(f"{where}/{MANIFEST}: entry for {name} needs size and sha256")
    if schema >= 3:
        _check_served(manifest.get("served"), f"{where}/{MANIFEST}")
    missing = [name for name in serving_files(manifest) if name not in files]
    if missing:
        raise BundleError(f"{where}/{MANIFEST} does not list {', '.join(missing)}")
    return manifest


def _check_served(served: object, where: str) -> None:
    if not isinstance(served, dict):
        raise BundleError(
            f"{where}: 'served' must be an object (model, transitions_weight, weights)"
        )
    model, weight, name = (
        served.get("model"),
        served.get("transitions_weight"),
        served.get("weights"),
    )
    if not isinstance(model, str) or not VERSION_PATTERN.match(model):
        raise BundleError(f"{where}: served model {model!r} is not a model name")
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not 0 <= weight < float("inf")
    ):
        raise BundleError(f"{where}: served transitions_weight {weight!r} is not a number >= 0")
    history_weight = served.get("history_weight", 0)
    if isinstance(history_weight, bool) or not isinstance(history_weight, int | float):
        raise BundleError(f"{where}: served history_weight {history_weight!r} is not a number")
    if not _safe_name(name) or not str(name).endswith(".safetensors"):
        raise BundleError(f"{where}: served weights {name!r} is not a .safetensors file name")


def verify_file(path: Path, expected: dict, where: str) -> None:
    name = path.name
    if not path.is_file():
        raise BundleError(f"{where}: {name} is missing")
    size = path.stat().st_size
    if size != expected.get("size"):
        raise BundleError(
            f"{where}: {name} has {size} bytes, the manifest says {expected.get('size')} "
            "(truncated or replaced)"
        )
    actual = sha256_file(path)
    if actual != expected.get("sha256"):
        raise BundleError(
            f"{where}: {name} fails its sha256 check ({actual[:12]}... != "
            f"{str(expected.get('sha256'))[:12]}...)"
        )


def fetch(uri: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """A local directory holding the bundle's serving files: the path itself for local
    bundles, or a fresh download of an s3:// prefix into `cache_dir` (e.g. /tmp)."""
    loc = store.parse(uri)
    if loc.scheme == "file":
        return Path(loc.key)
    root = Path(cache_dir or tempfile.gettempdir()) / "lmrec-bundles"
    root.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _parse_manifest(store.read_bytes(f"{uri.rstrip('/')}/{MANIFEST}"), uri)
    except store.StoreError as exc:
        raise BundleError(f"{uri}: cannot read {MANIFEST}: {exc}") from None
    target = root / manifest["model_version"]  # validated: a plain name
    target.mkdir(parents=True, exist_ok=True)

    def cached(name: str) -> bool:  # a warm container, or a retry
        dest, expected = target / name, manifest["files"][name]
        return (
            dest.is_file()
            and dest.stat().st_size == expected["size"]
            and sha256_file(dest) == expected["sha256"]
        )

    missing = [name for name in serving_files(manifest) if not cached(name)]
    # In parallel: each GET waits on S3 far longer than it computes, and a cold start
    # waits for the slowest file rather than for the sum of all.
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        futures = {
            name: pool.submit(store.download, f"{uri.rstrip('/')}/{name}", target / name)
            for name in missing
        }
    for name, future in futures.items():
        try:
            future.result()
        except store.StoreError as exc:
            raise BundleError(f"{uri}: cannot download {name}: {exc}") from None
    tmp = target / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest))
    os.replace(tmp, target / MANIFEST)
    for other in root.iterdir():  # loaded bundles live in memory: old copies only fill /tmp
        if other != target and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
    return target


def _load_counts(path: Path, where: str) -> np.ndarray:
    """A 1-D array of real numbers (as float32), or BundleError."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise BundleError(f"{where}: {path.name} is not a plain numpy array: {exc}") from None
    if array.ndim != 1 or array.dtype.kind not in "iuf":
        raise BundleError(f"{where}: {path.name} is {array.dtype} {array.shape}, not 1-D counts")
    return array.astype(np.float32)


def load(uri: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Bundle:
    """Fetch (if remote), verify and load a bundle; raises BundleError on any problem."""
    where = str(uri)
    directory = fetch(where, cache_dir)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{where}: {MANIFEST} is missing")
    manifest = _parse_manifest(manifest_path.read_bytes(), where)
    for name in serving_files(manifest):
        verify_file(directory / name, manifest["files"][name], where)

    from safetensors.numpy import load_file  # small, numpy-only; imported when first needed

    try:
        has_index = ivf.INDEX_FILE in manifest["files"]
        table = None
        if transitions.FILE in manifest["files"]:
            n_items = int(manifest["model"]["config"]["n_items"])
            table = transitions.read(
                directory / transitions.FILE, manifest.get("transitions") or {}, n_items
            )
        bundle = Bundle(
            manifest=manifest,
            weights=load_file(str(directory / weights_file(manifest))),
            catalog=items.read(directory / ITEMS),
            index=ivf.read(directory / ivf.INDEX_FILE) if has_index else None,
            popularity=_load_counts(directory / POPULARITY, where),
            recent_popularity=(
                _load_counts(directory / RECENT_POPULARITY, where)
                if RECENT_POPULARITY in manifest["files"]
                else None
            ),
            path=directory,
            transitions=table,
            history=_history_expert(manifest, where),
        )
    except BundleError:
        raise
    except transitions.TransitionsError as exc:
        raise BundleError(f"{where}: {exc}") from None
    except Exception as exc:  # verified bytes that still do not parse: a writer bug
        raise BundleError(f"{where}: cannot parse bundle files: {exc}") from None
    _check_consistent(bundle, where)
    return bundle


def _history_expert(manifest: dict, where: str) -> history.HistoryExpert | None:
    if "history_expert" not in manifest:
        return None
    try:
        return history.read(manifest["history_expert"])
    except ValueError as exc:
        raise BundleError(f"{where}/{MANIFEST}: {exc}") from None


def _check_consistent(b: Bundle, where: str) -> None:
    """Verified bytes can still disagree with each other (a writer bug): refuse those too."""
    n_items = b.catalog.n_items
    problems = []
    if b.popularity.shape != (n_items + 1,):
        problems.append("popularity does not match the catalog")
    if b.recent_popularity is not None and b.recent_popularity.shape != (n_items + 1,):
        problems.append("recent popularity does not match the catalog")
    if b.index is not None and len(b.index.rows) != n_items:
        problems.append("the item index does not cover the catalog")
    if b.config.get("n_items") != n_items:
        problems.append("the model config's n_items does not match the item list")
    if problems:
        raise BundleError(f"{where}: inconsistent bundle: {'; '.join(problems)}")


def verify_all(directory: Path, manifest: dict, where: str) -> None:
    """Every file the manifest lists, not only the serving ones (before copying a bundle)."""
    for name, expected in manifest["files"].items():
        verify_file(directory / name, expected, where)
