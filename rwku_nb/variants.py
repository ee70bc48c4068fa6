"""The three ways a method may train a model (RWKU: full, LoRA, a window of decoder layers), and the
snapshot that gives the original weights back between targets."""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from .errors import RwkuError


class Snapshot(dict):
    """name -> tensor, as `snapshot_weights` takes them (a dict that values computed on it can refer to weakly)."""


def snapshot_weights(model: torch.nn.Module, to_cpu: bool = False) -> dict[str, torch.Tensor]:
    """Detached clones of every parameter and buffer, on the model's device unless `to_cpu`."""
    with torch.no_grad():
        return Snapshot({
            name: (t.detach().to("cpu", copy=True) if to_cpu else t.detach().clone())
            for name, t in _named_tensors(model)
        })


def restore_weights(model: torch.nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    """Copy a `snapshot_weights` result back into `model` in place."""
    tensors = dict(_named_tensors(model))
    missing, extra = sorted(set(tensors) - set(snapshot)), sorted(set(snapshot) - set(tensors))
    if missing or extra:
        raise RwkuError(
            f"Snapshot does not match the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}; take the snapshot from the same model "
            "(e.g. remove LoRA with remove_lora before restoring a snapshot of the base model)."
        )
    for name, target in tensors.items():
        if target.shape != snapshot[name].shape:
            raise RwkuError(
                f"Snapshot tensor {name} has shape {tuple(snapshot[name].shape)} but the model's has "
                f"{tuple(target.shape)}; take the snapshot from the same model."
            )
    with torch.no_grad():
        for name, target in tensors.items():
            target.copy_(snapshot[name])


def add_lora(
    model: torch.nn.Module,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
):
    """Wrap `model` in LoRA adapters (RWKU's setting: r=8, alpha=16 on q_proj and v_proj); base frozen."""
    from peft import LoraConfig, get_peft_model

    # get_peft_model freezes the base in place; remember its flags so remove_lora can give them back.
    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 still calls transformers' deprecated `is_gradient_checkpointing`; the warning is
        # theirs, says nothing about this run, and would land on stderr in every notebook.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config)
    peft_model._rwku_requires_grad = requires_grad
    return peft_model


def remove_lora(peft_model) -> torch.nn.Module:
    """The base model with every LoRA adapter discarded, not merged (base weights stay bit-identical)."""
    if not hasattr(peft_model, "get_base_model"):
        raise RwkuError(f"remove_lora expects a model returned by add_lora, got {type(peft_model).__name__}.")
    requires_grad = getattr(peft_model, "_rwku_requires_grad", {})
    # unload() drops the adapter modules without touching the wrapped weights (merge=False).
    base = peft_model.unload()
    for n, p in base.named_parameters():
        p.requires_grad_(requires_grad.get(n, True))
    return base


def trainable_layers(model: torch.nn.Module, start: int, stop: int) -> list[str]:
    """Freeze everything except decoder layers [start, stop); return the trainable parameter names."""
    layers = decoder_layers(model)
    n = len(layers)
    if not (0 <= start < stop <= n):
        raise RwkuError(
            f"Layer range [{start}, {stop}) is outside this model's {n} decoder layers; "
            f"use 0 <= start < stop <= {n}."
        )
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers[start:stop]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def decoder_layers(model: torch.nn.Module):
    """The decoder layers (model.model.layers) of a Llama/Phi-3-style model, through a LoRA wrapper too."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", None), "layers", None)
    if layers is None:
        raise RwkuError(
            f"{type(base).__name__} has no model.layers; partial-layer training and RepE support decoder-only models "
            "laid out like Llama/Phi-3 (model.model.layers)."
        )
    return layers


def _named_tensors(model: torch.nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()
