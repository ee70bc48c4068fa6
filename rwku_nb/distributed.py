"""Sweeps over several processes started by `accelerate launch` (or torchrun): each process unlearns its
share of the jobs on its own device, all of them write to the one results store, and each waits for the
others before building tables. A single process (plain Python, a notebook) is a world of one: nothing here
then touches torch.distributed.

Shares are fixed by position (job i belongs to process i mod world size), not by what is still to do, so a
rerun after a crash gives every unfinished job to the same process as before and none to two processes.
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager

import torch

# A process may wait hours for the others' shares of a sweep; gloo/NCCL's default of 30 minutes would
# abort the barrier long before a slow share is done.
BARRIER_TIMEOUT = datetime.timedelta(days=7)


def world() -> tuple[int, int]:
    """(this process's rank, number of processes), from the launcher's RANK / WORLD_SIZE (0, 1 if none)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int | None:
    """This process's index on its machine (LOCAL_RANK, set by the launcher), or None outside a launch."""
    value = os.environ.get("LOCAL_RANK")
    return int(value) if value is not None else None


def share(items: list) -> list:
    """The items of `items` this process owns: those at positions rank, rank + size, ..."""
    rank, size = world()
    return [x for i, x in enumerate(items) if i % size == rank]


def wait() -> None:
    """Block until every process has reached this point (no-op for a single process)."""
    if world()[1] > 1:
        _state().wait_for_everyone()


@contextmanager
def main_first():
    """Run the body on process 0 first, then on the others: caches (a dequantized or knowledge-injected
    model) are built once, and read by the rest."""
    if world()[1] == 1:
        yield
        return
    with _state().main_process_first():
        yield


def _state():
    from accelerate import PartialState

    # cpu=True unless CUDA is there: accelerate otherwise treats a CPU-only torchrun world as one process.
    return PartialState(cpu=not torch.cuda.is_available(), timeout=BARRIER_TIMEOUT)
