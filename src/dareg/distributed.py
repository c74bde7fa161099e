"""Data parallelism under `torchrun --nproc_per_node=N`: process group set-up and a gather that
keeps gradients, so batch-level losses (MMD, smoothing) see the global batch on every rank."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, number of processes); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) when it launched us (even with
    one process); returns this process's device (cuda:LOCAL_RANK on GPUs)."""
    if "WORLD_SIZE" not in os.environ or (dist.is_available() and dist.is_initialized()):
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


class _Gather(torch.autograd.Function):
    """all_gather whose backward hands each rank the summed gradient of its own slice: every rank
    computes the same loss of the gathered tensor, and DDP then averages the parameter gradients,
    so the sum over ranks times 1/N is the gradient of one process's loss."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # sum over ranks of d(loss_r)/d(gathered)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's (n, ...) tensor (the same n on each) in rank order, keeping the
    gradient path back to each rank's own part."""
    if world()[1] == 1:
        return tensor
    return _Gather.apply(tensor)
