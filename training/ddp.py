"""Distributed data parallel through ``torchrun`` (PyTorch DDP; nothing home-made).

``torchrun --nproc_per_node N -m rt_tagger.training train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables; :func:`setup` joins the process group (NCCL on
CUDA, gloo on CPU). Each rank trains on its slice of every global batch; gradients are averaged
by DDP, so a step equals a single-process step on the whole global batch (with per-rank
BatchNorm statistics unless SyncBatchNorm is used on CUDA).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Dist", "all_mean", "gather_rows", "setup"]


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def setup(device: str = "auto") -> Dist:
    """Join the torchrun process group if there is one; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=_device(device, 0))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, dev)


def all_mean(d: Dist, value: float) -> float:
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / d.world


def gather_rows(d: Dist, rows: Any) -> list[Any]:
    """Every rank's ``rows`` object, in rank order (a one-element list without DDP)."""
    if not d.enabled:
        return [rows]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, rows)
    return out
