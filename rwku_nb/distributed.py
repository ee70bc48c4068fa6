"""Sweeps over several processes started by `accelerate launch` (or torchrun): each process unlearns its
share of the jobs on its own device, all of them write to the one results store, and each waits for the
others before building tables. A single process (plain Python, a notebook) is a world of one: nothing here
then touches torch.distributed.

Shares are fixed by position (job i belongs to process i mod world size), not by what is still to do, so a
rerun after a crash gives every unfinished job to the same process as before and none to two processes.

A model too large for one device with its optimizer (full fine-tuning of LLaMA-3-8B) is instead sharded:
launched with an FSDP config (params/accelerate/fsdp.yaml), the processes run every job together on one
model whose parameters, gradients and optimizer state are split across them by torch's FSDP2
(`fully_shard`, one unit per decoder layer). Each process computes the same batches (FSDP then averages
identical gradients: the updates equal one process's), and process 0's decisions are broadcast wherever
the model's outputs choose what runs next (`agree`), so that all of them call the model the same number
of times; process 0 alone writes results.
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager

import torch

from .errors import RwkuError

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


def sharded() -> bool:
    """True in a launch of several processes with an FSDP config (accelerate sets ACCELERATE_USE_FSDP):
    they then share one model, not the jobs."""
    return world()[1] > 1 and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def jobs(items: list) -> list:
    """This process's jobs of a sweep: all of them when the model is sharded, else its `share`."""
    return list(items) if sharded() else share(items)


def writes() -> bool:
    """Whether this process writes results and caches (in a sharded run the others hold the same ones)."""
    return not sharded() or world()[0] == 0


def shard(model, layers) -> None:
    """Shard `model` in place over the processes with FSDP2: each of `layers` (its decoder layers) one
    unit, the rest (embeddings, final norm, head) the root unit. The settings come from the FSDP config
    through accelerate's environment: fsdp_version must be 2, fsdp_reshard_after_forward is honoured."""
    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise RwkuError(f"FSDP version {os.environ.get('FSDP_VERSION', '1')} was launched; rwku_nb shards "
                        "with FSDP2: set `fsdp_version: 2` in the accelerate config (params/accelerate/fsdp.yaml).")
    if os.environ.get("FSDP_OFFLOAD_PARAMS", "false").lower() == "true":
        raise RwkuError("fsdp_offload_params: true is not supported by rwku_nb; set it to false in the "
                        "accelerate config (params/accelerate/fsdp.yaml).")
    from torch.distributed.fsdp import fully_shard

    _state()  # the process group FSDP communicates over
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() != "false"
    for layer in layers:
        fully_shard(layer, reshard_after_forward=reshard)
    fully_shard(model, reshard_after_forward=reshard)


def agree(value):
    """Process 0's `value`, on every process of a sharded run (`value` itself otherwise). A tensor is
    broadcast in place; anything else is pickled. For choices taken from the model's outputs (the next
    token, whether a loss is finite, sampled texts): processes that chose differently would call the
    sharded model a different number of times and wait for each other forever."""
    if not sharded():
        return value
    import torch.distributed as dist

    _state()
    if isinstance(value, torch.Tensor):
        dist.broadcast(value, src=0)
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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
