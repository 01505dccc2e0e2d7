"""Under DDP, one process per host reads and encodes the data; the others map its arrays.

Each torchrun process would otherwise parse the logs and hold its own copy of every array
(four GPUs: four copies). The host's local rank 0 loads the data once and writes the
arrays as .npy files in a host-local directory; after a barrier the other processes open
them with np.load(mmap_mode="r"), so the pages are shared through the OS page cache.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from training.data import Interactions

ARRAYS = ("user_ids", "item_ids", "offsets", "items", "timestamps")


def shared_dir() -> Path:
    """Host-local, one per torchrun job (TORCHELASTIC_RUN_ID), so concurrent jobs don't mix."""
    run = os.environ.get("TORCHELASTIC_RUN_ID", "single")
    return Path(tempfile.gettempdir()) / f"lmrec-data-{run}"


def save(data: Interactions, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ARRAYS:
        np.save(directory / f"{name}.npy", getattr(data, name), allow_pickle=False)
    if data.catalog is not None:
        data.catalog.reset_index().to_parquet(directory / "catalog.parquet", index=False)
    meta = {"fingerprint": data.fingerprint, "stats": data.stats}
    (directory / "meta.json").write_text(json.dumps(meta))


def load(directory: Path) -> Interactions:
    arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
    meta = json.loads((directory / "meta.json").read_text())
    catalog = None
    if (directory / "catalog.parquet").exists():
        catalog = pd.read_parquet(directory / "catalog.parquet").set_index("item_id")
    return Interactions(
        **arrays, fingerprint=meta["fingerprint"], stats=meta["stats"], catalog=catalog
    )
