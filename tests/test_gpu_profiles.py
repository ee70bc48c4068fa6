"""Every GPU and Colab profile runs its whole sweep structure on CPU, so that a GPU user's first run cannot
die on a key, a layer index, a LoRA module name or a dtype path: every method, variant, batch size, layer
window, robustness attack and selective run of the profile, for one target and a step or two each, on a tiny random model of
the profile's architecture with its number of decoder layers and its dtype (bf16 where it says so).

What is shrunk is sizes only: the rows read per file, texts per corpus, tokens generated, EL prefix positions
(every 8th), epochs (at most 2) and the batch-target sizes (the profile's own are checked against its
`batch_targets`; two sizes of 1 and 2 targets run). Not run here, because they are the same for every profile and the CI profile runs them: the
per-epoch and per-alpha curve points (`curve`), and the utility sets other than MMLU (BBH and fluency decode
through the generation path the probes use, 256 tokens each on a random model)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from rwku_nb import robustness, runner, seed0
from rwku_nb.config import PARAMS_DIR, load_profile
from conftest import sample_dir

# model id -> (model_type, decoder layers), from each model's config.json on the Hugging Face hub.
ARCHITECTURES = {
    "meta-llama/Meta-Llama-3-8B-Instruct": ("llama", 32),
    "microsoft/Phi-3-mini-4k-instruct": ("phi3", 32),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": ("llama", 24),
    "EleutherAI/gpt-neo-125m": ("gpt_neo", 12),
    "EleutherAI/gpt-neo-1.3B": ("gpt_neo", 24),
    "EleutherAI/gpt-neo-2.7B": ("gpt_neo", 32),
}
PROFILES = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml") if load_profile(p.stem)["device"] != "cpu")
ROWS_PER_FILE = 2


def test_every_gpu_profile_is_covered():
    assert {"gpu-llama3-8b", "gpu-phi3-mini", "colab-t4", "gpu-gptneo-125m"} <= set(PROFILES)
    unknown = {p: load_profile(p)["model"] for p in PROFILES if load_profile(p)["model"] not in ARCHITECTURES}
    assert not unknown, f"add the architecture of these profiles' models to ARCHITECTURES: {unknown}"


def _tiny_model(model_id: str, dtype: str, out):
    """A random model of `model_id`'s architecture and decoder-layer count, hidden size 64, SmolLM2's
    tokenizer, saved to `out` (a directory the profile's `model` then names)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from rwku_nb import models

    kind, layers = ARCHITECTURES[model_id]
    _, tok = models.load_model(models.TINY, device="cpu")
    ids = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
               pad_token_id=models.padding_id(tok))
    if kind == "gpt_neo":
        config = AutoConfig.for_model(kind, hidden_size=64, num_layers=layers, num_heads=4, window_size=16,
                                      attention_types=[[["global", "local"], layers // 2]],
                                      max_position_embeddings=512, **ids)
    else:
        config = AutoConfig.for_model(kind, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                      **ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    assert len(model.transformer.h if kind == "gpt_neo" else model.model.layers) == layers
    model.to(getattr(torch, dtype)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _small_data(out, targets: int):
    """The first `targets` target folders of the RWKU sample with every row file cut to ROWS_PER_FILE rows."""
    src = sample_dir() / "Target"
    folders = sorted((p for p in src.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_")[0]))
    for folder in folders[:targets]:
        dest = out / "Target" / folder.name
        dest.mkdir(parents=True)
        for f in folder.glob("*.json"):
            rows = json.loads(f.read_text())
            if f.stem != "intro" and isinstance(rows, list):
                rows = rows[:ROWS_PER_FILE]
            (dest / f.name).write_text(json.dumps(rows))
    # utility sets live in some folders only; the loader falls back to the first that has them
    shutil.copytree(sample_dir() / "generation", out / "generation")  # the official generation inputs
    return out


@pytest.mark.skipif(sample_dir() is None, reason="RWKU sample not found: set RWKU_DATA")
@pytest.mark.parametrize("profile", PROFILES)
def test_gpu_profile_sweep_structure_runs_on_a_tiny_model_of_its_architecture(profile, tmp_store, tmp_path):
    p = load_profile(profile)
    kind, layers = ARCHITECTURES[p["model"]]
    model_dir = _tiny_model(p["model"], str(p["dtype"]).removeprefix("torch."), tmp_path / "model")
    chat = kind != "gpt_neo"  # GPT-Neo has no chat template: its profiles run notebook 07 only
    if chat:  # the batch sizes fit the pool of targets they are drawn from ("1-50")
        lo, hi = (int(x) for x in str(p["batch_targets"]).split("-"))
        assert max(p["batch_sizes"]) <= hi - lo + 1
    data = _small_data(tmp_path / "rwku", 2)
    capped = {m: {v: {**h, "epochs": min(h["epochs"], 2)} for v, h in by_variant.items()}
              for m, by_variant in p["hparams"].items()}
    overrides = {
        "model": str(model_dir), "device": "cpu", "data": str(data), "generation_dir": None, "targets": "1",
        "corpus_size": 2, "reject_size": None, "corpus_max_new_tokens": 8, "max_new_tokens": 4, "max_length": 64,
        "utility": ["mmlu"] if p["utility"] else [], "utility_size": 1, "hparams": capped,
        "curve": False, "batch_targets": "1-2", "batch_sizes": [1, 2],
        "selective_size": 2, "selective_length": 24, "selective_epochs": 1, "selective_batch_size": 2,
        "el_n": min(p["el_n"], 8), "el_stride": 8, "ppl_size": 2, "ppl_max_length": 32,
        "relearn_steps": [1], "relearn_size": 2, "robust_utility": "mmlu",
    }
    if p["selective_data"] == "extraction":
        overrides["selective_file"] = "lm_extraction_4_0.csv"
    p = load_profile(profile, overrides)
    assert str(p["dtype"]).removeprefix("torch.") in ("bfloat16", "float32")

    if chat:
        single = runner.run_sweep(p)
        trained = [m for m in p["methods"] if m not in ("before", "icu", "repe")]
        assert set(single["method"]) == set(p["methods"])
        assert set(single.query("method in @trained")["variant"]) == set(p["variants"])
        batch = runner.run_batch(p)
        assert set(batch["setting"]) == {f"batch-{n}" for n in p["batch_sizes"]}
        assert set(batch["method"]) == set(p["batch_methods"])
        windows = runner.run_layers(p)
        assert set(windows["variant"]) == {f"layers-{a}-{b}" for a, b in p["layer_windows"]}
        assert max(b for _, b in p["layer_windows"]) <= layers
        robust = robustness.run_robustness(p)
        assert set(robust["method"]) == set(p["robust_methods"]) and set(robust["variant"]) == set(p["robust_variants"])
        assert {s for s in robust["setting"] if s.startswith("quant-")} == {f"quant-{b}" for b in p["quant_bits"]}
    runs = seed0.run_selective(p)
    assert {(m, v) for m, v in zip(runs["method"], runs["variant"])} == \
        {(m, v) for m in p["selective_methods"] for v in p["selective_variants"]}
    shutil.rmtree(model_dir)
