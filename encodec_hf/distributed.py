"""torch.distributed, once for the package: the process group torchrun asks for, rank and world size, a barrier,
and the broadcast, sum and average that the codebooks (EnCodec 0.1.1 keeps every rank's codebooks equal), the
balancer and the trainer use. Outside an initialised process group every helper is a no-op.

One backend choice (`BACKEND`): gloo for CPU tensors and, when CUDA is there, NCCL for CUDA tensors, in one group;
torch sends each collective to the backend of its tensor's device. The barrier goes through gloo (a CPU tensor),
so that tokenizing with a model on the CPU of a machine with GPUs needs no CUDA device set per rank.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def _backend() -> str:
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def is_initialised() -> bool:
    """Whether a torch.distributed process group is running."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): (0, 1) in a plain process; under torchrun (WORLD_SIZE > 1 in the environment) the
    process group is initialised first, if no one has."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_initialised():
        dist.init_process_group(_backend())
    if is_initialised():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (through gloo, see the module's docstring)."""
    if is_initialised() and dist.get_world_size() > 1:
        dist.all_reduce(torch.zeros(1))


def broadcast_from_rank0(tensors) -> None:
    """Copy rank 0's values of `tensors` to every rank, in place: what EnCodec 0.1.1 does with a codebook's
    buffers after initialising it or replacing entries; the trainer with its models at the start."""
    if is_initialised():
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks, in place; returns it."""
    if is_initialised():
        dist.all_reduce(tensor)
    return tensor


def average_across_ranks(*tensors: torch.Tensor) -> None:
    """Average tensors in place over all ranks."""
    if is_initialised():
        world = dist.get_world_size()
        for tensor in tensors:
            sum_across_ranks(tensor).div_(world)
