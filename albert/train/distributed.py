"""The process group: one code path for a single process and for `torchrun` (DDP/FSDP)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from albert.errors import AlbertError


@dataclass
class Distributed:
    """Where this process sits: rank/world size from torchrun's environment, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, values: torch.Tensor | list[float]) -> list[float]:
        """Sum a few numbers over all ranks (one small collective, one device->host copy)."""
        tensor = torch.as_tensor(values, dtype=torch.float64, device=self.device)
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def say(self, message: str) -> None:
        """Print on the main rank only, above any progress bar."""
        if self.is_main:
            from tqdm.auto import tqdm

            tqdm.write(message)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AlbertError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def setup_distributed(device: str = "auto") -> Distributed:
    """Join the process group when launched by `torchrun` (RANK/WORLD_SIZE set), else run alone.

    NCCL on GPUs, gloo on CPUs. CPU threads are split between the processes of one node so two
    ranks on a 2-core machine do not fight over the same cores."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device)
    if target.type == "cuda":
        target = torch.device("cuda", local_rank if world_size > 1 else (target.index or 0))
        torch.cuda.set_device(target)
    if world_size > 1:
        if not dist.is_available():
            raise AlbertError("this PyTorch build has no torch.distributed; run a single process instead")
        if not dist.is_initialized():
            backend = "nccl" if target.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        if target.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Distributed(rank, world_size, local_rank, target)


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shard_fsdp(model: nn.Module) -> nn.Module:
    """FSDP2 over the whole model as one unit: ALBERT's shared layers are re-entered L times and
    its encoder reads the attention weights directly, so finer units would gather too late.
    Gradients and optimiser state are sharded; parameters are gathered for each forward."""
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        raise AlbertError("--fsdp needs PyTorch >= 2.6 (torch.distributed.fsdp.fully_shard)") from None
    fully_shard(model)
    return model
