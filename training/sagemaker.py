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
import sys
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


def torchrun_worker(env=os.environ) -> bool:
    """Whether this process is a worker torchrun started (the launcher does the once-per-job
    steps: output checks, erasure, history sync). Both of torchrun's variables, not
    LOCAL_RANK alone: a shell that happens to export it must not skip the erasure step."""
    return "LOCAL_RANK" in env and "TORCHELASTIC_RUN_ID" in env


def launch_command(
    resource: dict, processes_per_host: int, entry_args: list[str], port: int = 29500
) -> list[str] | None:
    """The torchrun command that re-runs this entry on every process, or None for one process.

    SageMaker starts `train` once per host; we turn that into torchrun with one process per
    GPU (or `processes_per_host`), node rank from this host's place in `hosts`, and the first
    host as the rendezvous master.
    """
    if torchrun_worker():
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
