"""``torch.distributed`` set-up shared by every bundle's ``multi_gpu_train.json``.

A bundle run under ``torchrun`` calls, in its ``initialize`` list::

    "$app.engine.init_distributed()",
    "$app.engine.other_ranks_wait()",
    "$@datalist",
    "$app.engine.release_other_ranks()",

so the process group exists before any handler asks for its rank, rank 0 alone creates the run folder and
writes the seeded split, and the other ranks then read that split instead of racing to write it. The
``finalize`` list calls :func:`finalize_distributed`.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

__all__ = [
    "finalize_distributed",
    "init_distributed",
    "local_device",
    "other_ranks_wait",
    "rank",
    "release_other_ranks",
]

logger = logging.getLogger(__name__)


def rank() -> int:
    """This process's rank, 0 when not distributed."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_device() -> torch.device:
    """The device of this process: GPU ``LOCAL_RANK`` (set by torchrun) on CUDA, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init_distributed() -> int:
    """Join the process group torchrun describes (NCCL on GPUs, gloo on CPU) and return this rank.

    On CUDA each process takes the GPU ``LOCAL_RANK``. Ranks other than 0 log warnings and errors only,
    so a run's log has each line once. Idempotent.
    """
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_device())
    if dist.get_rank() > 0:
        logging.getLogger().setLevel(logging.WARNING)
    else:
        logger.info(
            "distributed training: %d processes, backend %s", dist.get_world_size(), dist.get_backend()
        )
    return dist.get_rank()


def other_ranks_wait() -> None:
    """Ranks other than 0 block here until rank 0 calls :func:`release_other_ranks`."""
    if rank() > 0:
        dist.barrier()


def release_other_ranks() -> None:
    """Rank 0 lets the ranks blocked in :func:`other_ranks_wait` go on."""
    if dist.is_initialized() and rank() == 0:
        dist.barrier()


def finalize_distributed() -> None:
    """Wait for every rank, then leave the process group (so no rank exits while another still talks)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
