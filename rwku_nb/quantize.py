"""The quantization attack (Zhang et al., ICLR 2025, "Catastrophic Failure of LLM Unlearning via
Quantization"): evaluate an unlearned model after round-to-nearest (RTN) weight-only quantization to 8 or
4 bits, simulated in place (quantize, then dequantize back to the weight's dtype).

Conventions, and where they come from:

* Asymmetric per-group RTN with a zero point, integers in [0, 2**bits - 1], one (scale, zero point) per
  `group_size` consecutive input columns of each output row; 128 by default. This is the RTN of AWQ's
  `pseudo_quantize_tensor` (mit-han-lab/llm-awq, awq/quantize/quantizer.py), whose entry point defaults to
  zero_point=True and q_group_size=128 (awq/entry.py).
* Rounding follows torchao 0.18.0's affine primitives (torchao/quantization/quant_primitives.py) bit for
  bit, for MappingType.ASYMMETRIC, block_size (1, group_size), quant_min 0, quant_max 2**bits - 1, computed
  on the float32 weight: the group's min/max range is widened to include 0; scale = (max - min) / qmax,
  clamped below at eps = torch.finfo(float32).smallest_normal (torchao's default for float32 input);
  zero point = clamp(0 - round(min / scale), 0, qmax), an integer (ZeroPointDomain.INT);
  q = clamp(round(w * (1 / scale)) + zero point, 0, qmax); w' = (q - zero point) * scale. torch.round
  rounds halves to even. AWQ differs in two details: it uses the group's plain min/max (0 not included)
  with (max - min) clamped at 1e-5, and divides by the scale. For a group that straddles 0 (almost every
  group of LLM weights) both give the same scale and zero point; rare near-ties may still round apart.
* in_features not divisible by group_size: full groups from the left, then one shorter group with the
  remaining columns (column j is in group j // group_size); a row narrower than group_size is one group.
  (SmolLM2's hidden size 576 gives 4 groups of 128 and one of 64.)
* Which matrices: every torch.nn.Linear inside the decoder layers (model.model.layers), as AWQ's
  pseudo_quantize_model_weight does (it walks the transformer blocks only); the token embedding, the final
  norm and the lm_head (tied to the embedding in SmolLM2) stay in full precision, as in weight-only LLM
  quantization. Norm weights and biases are not quantized.
* Not the paper's released evaluation: its code (zzwjames/FailureLLMUnlearning, utils.py load_model) loads
  the model through bitsandbytes, BitsAndBytesConfig(load_in_4bit=True) or (load_in_8bit=True), i.e.
  bitsandbytes' own 4-bit / LLM.int8() schemes. This module is the plain RTN attack, deterministic and
  CPU-friendly.

quantize_model_ overwrites the weights: take `rwku_nb.variants.snapshot_weights(model)` first and give
them back with `rwku_nb.variants.restore_weights(model, snapshot)`. Merge LoRA adapters before quantizing
(quantize_model_ refuses a model with unmerged adapters).
"""
from __future__ import annotations

import torch

from .errors import RwkuError
from .variants import decoder_layers

BITS = range(2, 9)  # the bit widths accepted; the attack uses 8 and 4


def _check(bits: int, group_size: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in BITS:
        raise RwkuError(f"bits={bits!r} is not supported; use an integer from 2 to 8 (the attack uses 8 and 4).")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise RwkuError(f"group_size={group_size!r} must be an integer >= 1 (128 is the usual value).")


def _fake_quantize_groups(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Quantize -> dequantize a float32 [out, in] matrix whose `in` is a multiple of `group_size`."""
    rows, cols = w.shape
    x = w.reshape(rows, cols // group_size, group_size)
    qmax = float(2**bits - 1)
    lo = x.amin(dim=-1, keepdim=True).clamp(max=0.0)  # the range always contains 0
    hi = x.amax(dim=-1, keepdim=True).clamp(min=0.0)
    scale = ((hi - lo) / qmax).clamp(min=torch.finfo(torch.float32).smallest_normal)
    zero = (0.0 - torch.round(lo / scale)).clamp(0.0, qmax)  # an integer, kept in float32 (exact)
    q = (torch.round(x * (1.0 / scale)) + zero).clamp(0.0, qmax)
    return ((q - zero) * scale).reshape(rows, cols)


@torch.no_grad()
def fake_quantize(weight: torch.Tensor, bits: int, group_size: int = 128) -> torch.Tensor:
    """`weight` [out, in] after RTN quantization to `bits` and back, per group of `group_size` input
    columns (asymmetric, zero point, see the module docstring); a new tensor of `weight`'s dtype and device.
    Equals torchao's choose_qparams_affine -> quantize_affine -> dequantize_affine on weight.float()."""
    _check(bits, group_size)
    if weight.dim() != 2 or not weight.is_floating_point():
        raise RwkuError(
            f"fake_quantize expects a 2-D floating-point weight [out_features, in_features], got shape "
            f"{tuple(weight.shape)} and dtype {weight.dtype}."
        )
    w = weight.detach().to(torch.float32)
    cols = w.shape[1]
    full = cols // group_size * group_size
    parts = []
    if full:
        parts.append(_fake_quantize_groups(w[:, :full], bits, group_size))
    if full < cols:  # the shorter last group (the whole row when cols < group_size)
        parts.append(_fake_quantize_groups(w[:, full:], bits, cols - full))
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return out.to(weight.dtype)


@torch.no_grad()
def quantize_model_(model: torch.nn.Module, bits: int, group_size: int = 128) -> int:
    """Fake-quantize, in place, the weight of every torch.nn.Linear inside `model`'s decoder layers
    (embedding, final norm and lm_head untouched); returns how many matrices were quantized.
    Snapshot the weights first (rwku_nb.variants.snapshot_weights) to restore them afterwards."""
    _check(bits, group_size)
    layers = decoder_layers(model)
    linears = [m for layer in layers for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    if any(hasattr(m, "lora_A") for layer in layers for m in layer.modules()):
        raise RwkuError(
            "The model has unmerged LoRA adapters; merge them into the base weights first (peft's "
            "merge_adapter()), since quantizing the base and the adapter factors separately is not the "
            "quantization attack."
        )
    for m in linears:
        m.weight.copy_(fake_quantize(m.weight, bits, group_size))
    return len(linears)
