"""DDP plumbing, detected from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as torch_dist


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=device)


def teardown(env: DistEnv) -> None:
    if env.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def all_reduce_arrays(env: DistEnv, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum numpy arrays over ranks (bool arrays are OR-ed)."""
    if not env.enabled:
        return arrays
    out = {}
    for key, value in arrays.items():
        t = torch.from_numpy(np.asarray(value, dtype=np.float64).copy())
        torch_dist.all_reduce(t)  # gloo and nccl both reduce float64 on CPU/GPU tensors
        out[key] = t.numpy() > 0 if value.dtype == bool else t.numpy()
    return out


def any_rank(env: DistEnv, flag: bool) -> bool:
    """True if `flag` is set on any rank, so every rank takes the same branch."""
    if not env.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    torch_dist.all_reduce(t)
    return bool(t.item() > 0)


def barrier(env: DistEnv) -> None:
    if env.enabled:
        torch_dist.barrier()
