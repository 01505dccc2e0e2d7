"""Resumable checkpoints with no pickle: tensors in safetensors, everything else in JSON.

SageMaker syncs <base>/checkpoints to S3 and restores it when a (spot) job restarts; the
trainer state names the data fingerprint and model config, so a checkpoint from another
run is ignored rather than silently mixed in.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

STATE = "trainer.json"


def _optimizer_tensors(optimizer: Any) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors "<optimizer>.<param>.<name>" and the JSON rest of a ModelOptimizer's state."""
    tensors, metas = {}, []
    for n, sd in enumerate(optimizer.state_dict()["optimizers"]):
        scalars = {}
        for idx, state in sd["state"].items():
            for name, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"{n}.{idx}.{name}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{idx}.{name}"] = value
        metas.append({"param_groups": sd["param_groups"], "scalars": scalars})
    return tensors, {"optimizers": metas}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    out = []
    for n, one in enumerate(meta["optimizers"]):
        state: dict[int, dict[str, Any]] = {}
        mine = [(k.split(".", 1)[1], v) for k, v in tensors.items() if k.split(".")[0] == str(n)]
        for key, value in mine + list(one["scalars"].items()):
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        out.append({"state": state, "param_groups": one["param_groups"]})
    return {"optimizers": out}


def _atomic_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def save(
    directory: Path,
    model: torch.nn.Module,
    optimizer: Any,
    best_state: dict[str, torch.Tensor],
    extra: dict[str, torch.Tensor],
    trainer_state: dict,
) -> None:
    """`extra`: tensors the trainer keeps beside the model (the weight average), or {}."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        directory / "model.safetensors",
    )
    save_file(best_state, directory / "best.safetensors")
    save_file(tensors, directory / "optimizer.safetensors")
    save_file(extra, directory / "extra.safetensors")
    (directory / "optimizer.json").write_text(json.dumps(meta))
    # Written last: a checkpoint counts only once its state file names it complete.
    _atomic_json(directory / STATE, trainer_state)


def load(
    directory: Path,
    model: torch.nn.Module,
    optimizer: Any,
    identity: dict,
) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]] | None:
    """Restore model and optimizer; return (trainer_state, best_state, extra), or None if
    absent."""
    state_file = directory / STATE
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text())
        if state.get("identity") != identity:
            log.warning("checkpoint in %s belongs to another run; starting afresh", directory)
            return None
        model.load_state_dict(load_file(directory / "model.safetensors"))
        meta = json.loads((directory / "optimizer.json").read_text())
        optimizer.load_state_dict(
            _optimizer_state(load_file(directory / "optimizer.safetensors"), meta)
        )
        best = load_file(directory / "best.safetensors")
        extra = load_file(directory / "extra.safetensors")
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("checkpoint in %s is unreadable (%s); starting afresh", directory, exc)
        return None
    return state, best, extra
