"""The one scoring core: every no-grad forward pass that scores given tokens (MIA, memorization NLL/EM,
utility log-probs, the NPO/DPO reference log-probs) runs through `forward_batches`, which orders the
sequences, right-pads each batch and, when asked, runs the prefix a batch shares once and reuses its
key/value cache. Greedy generation (rwku_nb.generation) shares the prefix-cache helpers.

Numbers: a row's logits depend on its batch (padding width, batch size) only through float rounding, so
callers that must reproduce stored results keep the batch size and order they always used.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from itertools import groupby
from typing import Any, Callable, Iterator, NamedTuple

import torch
from transformers import DynamicCache

from .errors import RwkuError
from .progress import tqdm


class Batch(NamedTuple):
    """One forward pass over some of the sequences; positions are counted after the shared prefix."""

    rows: list[int]  # input index of each batch row
    logits: torch.Tensor  # [B, W, V] in the model's dtype; W = longest row minus n_prefix
    input_ids: torch.Tensor  # [B, W] each row's tokens after the prefix, right-padded with pad_id
    attention_mask: torch.Tensor  # [B, n_prefix + W], 1 on real tokens (the prefix included)
    n_prefix: int  # tokens of the prefix shared by the batch (0 unless shared_prefix)
    # with `keep`: the positions (after the prefix) whose logits were computed, logits [B, len(kept), V] in this order
    kept: list[int] | None = None


@torch.no_grad()
def forward_batches(model, sequences: list[list[int]], pad_id: int, batch_size: int,
                    key: Callable[[list[int]], Any] | None = len, shared_prefix: bool = False,
                    min_suffix: int | list[int] = 1, group: Callable[[list[int]], Any] | None = None,
                    desc: str = "score", keep: list[list[int]] | None = None) -> Iterator[Batch]:
    """Yield a `Batch` per `batch_size` sequences taken in `key` order (stable; None: input order).

    With `shared_prefix`, the tokens every row of a batch starts with run once and their key/value cache
    is reused by the rows; the prefix never covers a row's last `min_suffix` tokens (an int, or one per
    sequence), the positions whose logits the caller reads. With `group` (a key under which `key` order keeps
    equal values together, e.g. the first tokens of a few-shot context), batches never mix groups, and with
    `shared_prefix` a group's common prefix runs once for all of its batches (MMLU: one 5-shot prefix per task).
    `keep` (one list per sequence of the positions, counted from the sequence's start, whose logits the caller
    reads): the output layer runs only at the batch's union of them (`Batch.kept`), not at every position.
    """
    needed = [min_suffix] * len(sequences) if isinstance(min_suffix, int) else list(min_suffix)
    _check(sequences, batch_size, needed)
    device = next(model.parameters()).device
    order = list(range(len(sequences)))
    if key is not None:  # sorted() is stable: equal keys keep input order
        order.sort(key=lambda i: key(sequences[i]))
    if group is not None:  # whole groups; `key` order keeps each group's rows together
        parts = [list(rows) for _, rows in groupby(order, key=lambda i: group(sequences[i]))]
    else:
        parts = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    bar = tqdm(total=len(order), desc=desc, leave=False)
    for part in parts:  # a part's shared prefix runs once for all of its batches
        prefix = _prefix(part, sequences, needed) if shared_prefix else []
        prefix_kv = prefix_cache(model, prefix, device) if prefix else None
        for start in range(0, len(part), batch_size):
            rows = part[start : start + batch_size]
            yield _forward(model, sequences, rows, len(prefix), prefix_kv, pad_id, device, shared_prefix, keep)
            bar.update(len(rows))
    bar.close()


def _prefix(rows: list[int], sequences: list[list[int]], needed: list[int]) -> list[int]:
    """The tokens all `rows` start with, short of each row's last `needed` tokens."""
    n = min(common_prefix_length([sequences[i] for i in rows]), min(len(sequences[i]) - needed[i] for i in rows))
    return sequences[rows[0]][:n]


def _forward(model, sequences, rows, n_prefix, prefix_kv, pad_id, device, shared_prefix, keep=None) -> Batch:
    """One right-padded forward pass of `rows` after their cached prefix of `n_prefix` tokens (logits at the
    rows' `keep` positions only, when given)."""
    suffixes = [sequences[i][n_prefix:] for i in rows]
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), n_prefix + width), dtype=torch.long)
    attention[:, :n_prefix] = 1
    for r, s in enumerate(suffixes):  # right padding: a row's tokens keep positions 0..n-1, none sees a pad
        input_ids[r, : len(s)] = torch.tensor(s)
        attention[r, n_prefix : n_prefix + len(s)] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    extra = {}
    if shared_prefix:  # positions continue after the cached prefix; a plain pass keeps the model's defaults
        cache = expand_cache(prefix_kv, len(rows)) if prefix_kv else None
        extra = {"position_ids": (torch.arange(width, device=device) + n_prefix).expand(len(rows), -1),
                 "past_key_values": cache, "use_cache": cache is not None}
    kept = None
    if keep is not None:
        kept = sorted({p - n_prefix for i in rows for p in keep[i]})
        extra["logits_to_keep"] = torch.tensor(kept, device=device)
    with grouped_attention(device):
        logits = model(input_ids=input_ids, attention_mask=attention, **extra).logits
    return Batch(rows, logits, input_ids, attention, n_prefix, kept)


def _check(sequences: list[list[int]], batch_size: int, needed: list[int]) -> None:
    if not sequences:
        raise RwkuError("forward_batches: no sequences to score (an empty list); callers return early on "
                        "empty input, so this is a caller bug.")
    if batch_size < 1:
        raise RwkuError(f"forward_batches: batch_size must be >= 1, got {batch_size}")
    if len(needed) != len(sequences):
        raise RwkuError(f"forward_batches: {len(needed)} min_suffix values for {len(sequences)} sequences")
    for i, (s, n) in enumerate(zip(sequences, needed)):
        if len(s) < max(n, 1):
            raise RwkuError(f"forward_batches: sequence {i} has {len(s)} tokens, fewer than the {max(n, 1)} "
                            "it must keep after the shared prefix (min_suffix); nothing to score there.")


def labels(batch: Batch, masks: list[list[int] | None]) -> torch.Tensor:
    """Targets [B, W] as training.collate builds them: the tokens, -100 on padding and where the row's
    mask (one per input sequence, over all its tokens; None: every token scored) is 0."""
    keep = batch.attention_mask[:, batch.n_prefix :].bool()
    for r, i in enumerate(batch.rows):
        if masks[i] is not None:
            mask = masks[i][batch.n_prefix :]
            keep[r, : len(mask)] &= torch.tensor(mask, device=keep.device) != 0
    return batch.input_ids.masked_fill(~keep, -100)


def common_prefix_length(sequences: list[list[int]]) -> int:
    """Length of the longest token prefix shared by all sequences."""
    first, n = sequences[0], min(len(s) for s in sequences)
    for j in range(n):
        if any(s[j] != first[j] for s in sequences):
            return j
    return n


def prefix_cache(model, prefix_ids: list[int], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (key, value) tensors of one prefix, shape [1, heads, P, head_dim]."""
    ids = torch.tensor([prefix_ids], device=device)
    with grouped_attention(device):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in out.past_key_values.layers]


def expand_cache(prefix_kv, n: int) -> DynamicCache:
    """A fresh cache holding the prefix for `n` rows as broadcast views, copied nowhere: the first forward pass's
    cache update concatenates them with its own keys and values, the one copy it makes anyway."""
    cache = DynamicCache()
    for layer, (k, v) in enumerate(prefix_kv):
        cache.update(k[:, :, :0], v[:, :, :0], layer)  # creates the layer (its dtype and device), empty
        cache.layers[layer].keys, cache.layers[layer].values = k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)
    return cache


GQA_SWITCH = "TRANSFORMERS_SDPA_FORCE_GQA"  # transformers' own switch (integrations/sdpa_attention.py), read per call


@contextmanager
def grouped_attention(device):
    """Inference calls on CPU: SDPA attends each query head to its key/value head inside the kernel
    (`enable_gqa`), instead of transformers first copying every key/value head to its query heads (`repeat_kv`,
    a copy of each layer's keys and values on every masked forward pass). The same products of the same numbers:
    the logits are bitwise identical (tests/test_scoring.py). Elsewhere nothing changes: on CUDA a masked GQA
    call would leave the fast kernels, and training keeps the path its gradients were measured on."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = os.environ.get(GQA_SWITCH)
    os.environ[GQA_SWITCH] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[GQA_SWITCH]
        else:
            os.environ[GQA_SWITCH] = before
