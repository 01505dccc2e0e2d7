"""The SageMaker training-container contract.

<base> is $SAGEMAKER_BASE_DIR or /opt/ml (the sagemaker-training toolkit's convention):
  <base>/input/config/hyperparameters.json   all values are strings
  <base>/input/config/resourceconfig.json    {"current_host", "hosts", ...} when present
  <base>/input/data/<channel>/               train (required), items (optional)
  <base>/model/                              everything we write; SageMaker tars it
  <base>/output/failure                      why we failed, one paragraph
  <base>/checkpoints/                        synced to S3; restored on (spot) restart
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Paths:
    train: str  # file, directory or s3:// URI with the interactions
    items: str | None  # optional item catalog
    model_dir: Path
    checkpoints: Path | None
    failure: Path | None
    hyperparameters: Path | None = None
    resource_config: Path | None = None


def base_dir() -> Path:
    return Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml"))


def container_paths(base: Path | None = None) -> Paths:
    base = base or base_dir()
    channels = base / "input" / "data"
    items = channels / "items"
    return Paths(
        train=str(channels / "train"),
        items=str(items) if items.exists() else None,
        model_dir=base / "model",
        checkpoints=base / "checkpoints",
        failure=base / "output" / "failure",
        hyperparameters=base / "input" / "config" / "hyperparameters.json",
        resource_config=base / "input" / "config" / "resourceconfig.json",
    )


def write_failure(paths: Paths, reason: str) -> None:
    if paths.failure is None:
        return
    paths.failure.parent.mkdir(parents=True, exist_ok=True)
    paths.failure.write_text(reason.strip() + "\n")


def read_resource_config(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("hosts", []), list):
        raise ValueError(f"{path} must be an object with a list of hosts")
    return config


def launch_command(
    resource: dict, processes_per_host: int, entry_args: list[str], port: int = 29500
) -> list[str] | None:
    """The torchrun command that re-runs this entry on every process, or None for one process.

    SageMaker starts `train` once per host; we turn that into torchrun with one process per
    GPU (or `processes_per_host`), node rank from this host's place in `hosts`, and the first
    host as the rendezvous master.
    """
    if "LOCAL_RANK" in os.environ:
        return None  # already a torchrun worker
    hosts = resource.get("hosts") or ["localhost"]
    current = resource.get("current_host", hosts[0])
    if current not in hosts:
        raise ValueError(f"resourceconfig: current_host {current!r} is not in hosts {hosts}")
    import torch  # here, not at the top: bad settings are refused before torch loads

    nproc = processes_per_host or max(1, torch.cuda.device_count())
    if len(hosts) == 1 and nproc == 1:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    if len(hosts) == 1:
        cmd.append("--standalone")
    else:
        cmd += [
            f"--nnodes={len(hosts)}",
            f"--node_rank={hosts.index(current)}",
            f"--master_addr={hosts[0]}",
            f"--master_port={port}",
        ]
    return [*cmd, "-m", "training", *entry_args]


STAGE, PREVIOUS = ".lmrec-partial", ".lmrec-previous"  # inside the model dir, ours only
MARKER = "metrics.json"  # every finished job's output holds it


@contextmanager
def staged(model_dir: Path) -> Iterator[Path]:
    """A staging folder to write into, swapped into `model_dir` when the block ends well and
    removed when it does not (the previous model stays)."""
    stage = staging_dir(model_dir)
    try:
        yield stage
        replace_dir(stage, model_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def staging_dir(model_dir: Path) -> Path:
    """A new, empty folder inside the model dir that a run writes its output into. The model
    dir keeps the previous run's files until replace_dir swaps the new ones in, so a run that
    fails or is killed while exporting leaves the last good model where it was. Inside, not
    beside: the model dir is the one place known to be writable (a container may mount it
    on a read-only root), and renames within it never cross file systems."""
    model_dir.mkdir(parents=True, exist_ok=True)
    previous = model_dir / PREVIOUS
    if previous.exists() and not (model_dir / MARKER).exists():
        # killed inside replace_dir's renames (SIGKILL): the marker moves aside first and in
        # last, so without it the swap was cut short: the previous model goes back
        for child in list(previous.iterdir()):
            target = model_dir / child.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            child.rename(target)
    for leftover in (STAGE, PREVIOUS):  # a killed run's
        if (model_dir / leftover).exists():
            shutil.rmtree(model_dir / leftover)
    stage = model_dir / STAGE
    stage.mkdir()
    return stage


def replace_dir(stage: Path, model_dir: Path) -> None:
    """The model dir's files replaced by the staged ones, by renames: the old ones moved
    aside, the new ones moved in, then the old ones deleted. If a rename fails (or Ctrl-C
    lands) everything is moved back and the error raised: one model is always whole."""
    previous = model_dir / PREVIOUS
    previous.mkdir()
    # the marker (metrics.json) first out and last in: see staging_dir
    old = sorted((c.name for c in model_dir.iterdir() if not is_own(c)), key=lambda n: n != MARKER)
    new = sorted((c.name for c in stage.iterdir()), key=lambda n: n == MARKER)
    try:
        for name in old:
            (model_dir / name).rename(previous / name)
        for name in new:
            (stage / name).rename(model_dir / name)
    except BaseException:
        _restore(model_dir, stage, previous, old, new)
        raise
    shutil.rmtree(previous)
    stage.rmdir()


def _restore(model_dir: Path, stage: Path, previous: Path, old: list, new: list) -> None:
    """Undo a half-done replace_dir: the new files back to the stage, the old ones back."""
    for name in new:
        if (model_dir / name).exists() and not (stage / name).exists():
            (model_dir / name).rename(stage / name)
    for name in old:
        if (previous / name).exists():
            (previous / name).rename(model_dir / name)
    shutil.rmtree(previous, ignore_errors=True)


def is_own(child: Path) -> bool:
    """A staging folder a killed run left in its model dir (not the user's file)."""
    return child.name in (STAGE, PREVIOUS)
