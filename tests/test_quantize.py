"""Tests of rwku_nb.quantize: bit-exact agreement with torchao's affine primitives, a hand-computed case,
the tiny model under 8- and 4-bit RTN, and bad arguments."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from rwku_nb import variants
from rwku_nb.errors import RwkuError
from rwku_nb.quantize import fake_quantize, quantize_model_


def _weight(rows: int = 6, cols: int = 256, seed: int = 0) -> torch.Tensor:
    """Random weights of mixed magnitudes, with a constant group, an all-zero group and outliers."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    w[1] *= 30.0                 # a row on a much larger scale
    w[2, :128] = 0.3             # a constant, all-positive group (for group sizes 128 and 32)
    w[3, :128] = 0.0             # an all-zero group: the scale falls to torchao's eps
    w[4, 5], w[4, 150] = 50.0, -7.0  # outliers that stretch their groups' ranges
    w[5] = w[5].abs() + 0.01     # an all-positive row: the range is widened to include 0
    return w


# torchao, the reference, is installed beside the venv's packages, not among them (Makefile: `pip install
# --target .venv/torchao-ref`): transformers imports an installed torchao in every process and its CUDA
# extension warnings would land in the notebooks' outputs. Only this test puts it on the path.
TORCHAO = Path(sys.prefix) / "torchao-ref"


def _torchao(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """torchao's RTN for the same configuration, on the float32 weight; the reference."""
    if TORCHAO.is_dir() and str(TORCHAO) not in sys.path:
        sys.path.append(str(TORCHAO))
    qp = pytest.importorskip(
        "torchao.quantization.quant_primitives", reason=f"torchao is not installed in {TORCHAO} (make venv)"
    )
    block, qmax = (1, group_size), 2**bits - 1
    w = w.to(torch.float32)
    scale, zero = qp.choose_qparams_affine(w, qp.MappingType.ASYMMETRIC, block, torch.uint8, 0, qmax)
    q = qp.quantize_affine(w, block, scale, zero, torch.uint8, 0, qmax)
    return qp.dequantize_affine(q, block, scale, zero, torch.uint8, 0, qmax, output_dtype=torch.float32)


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("group_size", [128, 32])
def test_matches_torchao_bit_for_bit(bits, group_size):
    for seed in range(3):
        w = _weight(seed=seed)
        out = fake_quantize(w, bits, group_size)
        assert out.dtype == w.dtype and out.shape == w.shape
        assert torch.equal(out, _torchao(w, bits, group_size)), (bits, group_size, seed)
    # The quantization really happened: each group holds at most 2**bits distinct values.
    groups = fake_quantize(w, bits, group_size).reshape(-1, group_size)
    assert max(len(torch.unique(r)) for r in groups) <= 2**bits


def test_bf16_weight_matches_torchao_on_its_float32_upcast():
    w = _weight().to(torch.bfloat16)
    out = fake_quantize(w, 4, 32)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, _torchao(w, 4, 32).to(torch.bfloat16))


def test_ragged_last_group_is_quantized_on_its_own():
    # 200 columns, groups of 128: columns [0, 128) are one group and [128, 200) a shorter one.
    w = _weight(cols=200)
    expected = torch.cat([_torchao(w[:, :128], 4, 128), _torchao(w[:, 128:], 4, 72)], dim=1)
    assert torch.equal(fake_quantize(w, 4, 128), expected)
    # A row narrower than the group is a single group.
    assert torch.equal(fake_quantize(w[:, :64], 4, 128), _torchao(w[:, :64], 4, 64))


def test_hand_computed_two_bit_group():
    # 2 bits: integers 0..3 (qmax = 3); one group of 4 values per row.
    # Row 0, [-1, 0, 0.5, 2]: range [-1, 2], scale = 3 / 3 = 1, zero point = 0 - round(-1 / 1) = 1;
    #   q = clamp(round(w / 1) + 1, 0, 3) = [0, 1, 1, 3] (round(0.5) = 0: halves go to even);
    #   w' = (q - 1) * 1 = [-1, 0, 0, 2].
    # Row 1, [1, 2, 2.5, 3]: the range is widened to include 0, [0, 3], so scale = 1 and zero point = 0;
    #   q = [1, 2, 2, 3] (round(2.5) = 2, even), w' = [1, 2, 2, 3].
    w = torch.tensor([[-1.0, 0.0, 0.5, 2.0], [1.0, 2.0, 2.5, 3.0]])
    expected = torch.tensor([[-1.0, 0.0, 0.0, 2.0], [1.0, 2.0, 2.0, 3.0]])
    assert torch.equal(fake_quantize(w, 2, 4), expected)


def test_tiny_model_eight_bits_change_logits_less_than_four(tiny):
    model, _ = tiny
    cfg = model.config
    ids = torch.arange(3, 35).reshape(2, 16) % cfg.vocab_size
    original = variants.snapshot_weights(model)
    with torch.no_grad():
        ref = model(ids).logits
    changes, changed = {}, {}
    for bits in (8, 4):
        with torch.no_grad():
            n = quantize_model_(model, bits)
            changes[bits] = (model(ids).logits - ref).abs().max().item()
        # A Llama decoder layer holds 7 Linear matrices: q/k/v/o_proj (attention) and gate/up/down_proj (MLP).
        assert n == cfg.num_hidden_layers * 7
        now = dict(model.named_parameters())
        changed[bits] = sorted(k for k in now if not torch.equal(now[k], original[k]))
        variants.restore_weights(model, original)
    assert 0 < changes[8] < changes[4]
    # Only decoder-layer Linear weights move; embedding (tied lm_head) and norms stay as they were.
    linear = sorted(f"model.layers.{i}.{part}.weight" for i in range(cfg.num_hidden_layers)
                    for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
    assert changed[4] == linear


def test_quantize_model_refuses_unmerged_lora(tiny):
    model, _ = tiny
    peft_model = variants.add_lora(model)
    before = variants.snapshot_weights(peft_model)
    with pytest.raises(RwkuError, match="LoRA"):
        quantize_model_(peft_model, 4)
    after = variants.snapshot_weights(peft_model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing was half-quantized


@pytest.mark.parametrize("bits", [0, 1, 9, 16, 4.0, True, "4"])
def test_bad_bits(bits):
    with pytest.raises(RwkuError, match="bits"):
        fake_quantize(torch.ones(2, 4), bits)


@pytest.mark.parametrize("group_size", [0, -128, 1.5])
def test_bad_group_size(group_size, tiny):
    with pytest.raises(RwkuError, match="group_size"):
        fake_quantize(torch.ones(2, 4), 4, group_size)
    with pytest.raises(RwkuError, match="group_size"):
        quantize_model_(tiny[0], 4, group_size)


def test_bad_weight():
    with pytest.raises(RwkuError, match="2-D"):
        fake_quantize(torch.ones(8), 4)
    with pytest.raises(RwkuError, match="floating-point"):
        fake_quantize(torch.ones(2, 4, dtype=torch.int32), 4)
