"""Running the same training command alone or under ``torchrun`` (PyTorch DDP).

``torchrun --nproc_per_node=N -m spinebrain.training ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`init_distributed` then joins the process group (NCCL on CUDA, gloo on the CPU), gives each
process its device, and :func:`wrap_network` / :func:`sampler_for` do the rest. Only rank 0 writes
files or progress (:attr:`DistributedContext.is_main`). Without those variables it is one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..device import select_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_option: str | None = None) -> DistributedContext:
    """The context of this process; joins the process group when launched by torchrun with several processes."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = select_device(device_option)
    if world_size <= 1:
        return DistributedContext(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device(f"cuda:{local_rank}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, device)


def shutdown(context: DistributedContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.barrier()  # leave together: a process closing its connections while another still uses them aborts gloo
        dist.destroy_process_group()


def wrap_network(network: torch.nn.Module, context: DistributedContext) -> torch.nn.Module:
    """The network on its device, inside DistributedDataParallel when there are several processes."""
    network = network.to(context.device)
    if not context.distributed:
        return network
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network


def sampler_for(dataset, context: DistributedContext, shuffle: bool, seed: int):
    """A DistributedSampler splitting ``dataset`` over the processes (None for one process)."""
    if not context.distributed:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=shuffle, seed=seed)


def agree_any(flag: bool, context: DistributedContext) -> bool:
    """True on every process if it is True on any (so all processes stop together)."""
    if not context.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device(context))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_processes(value: float, context: DistributedContext) -> float:
    if not context.distributed:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device(context))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world_size


def _collective_device(context: DistributedContext) -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU tensors."""
    return context.device if context.device.type == "cuda" else torch.device("cpu")
