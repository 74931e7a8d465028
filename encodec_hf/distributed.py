"""torch.distributed helpers shared by the codebooks (EnCodec 0.1.1 keeps every rank's codebooks equal) and the
trainer: each a no-op outside an initialised process group."""

from __future__ import annotations

import torch


def broadcast_from_rank0(tensors) -> None:
    """Copy rank 0's values of `tensors` to every rank, in place (a no-op outside torch.distributed): what EnCodec
    0.1.1 does with a codebook's buffers after initialising it or replacing entries; the trainer with its models
    at the start."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for tensor in tensors:
            torch.distributed.broadcast(tensor.data, src=0)


def average_across_ranks(*tensors: torch.Tensor) -> None:
    """Average tensors in place over all ranks (a no-op outside torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        for tensor in tensors:
            torch.distributed.all_reduce(tensor)
            tensor.div_(world)
