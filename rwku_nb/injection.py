"""Knowledge injection: teach a small model the RWKU facts of chosen targets before unlearning them.

Why: SmolLM2-135M barely knows RWKU's famous people (forget scores 0-25 with the official prompts),
so on CPU a "Before" row near zero leaves nothing to unlearn. Fine-tuning it on the forget level-1/2
and neighbor level-1/2 probes of its targets, in the official evaluation format with the loss on the
answer tokens only, gives it knowledge of the paper's shape. Level-3 (adversarial) probes and the MIA
member sets are never trained on: they measure what the injected knowledge generalised to.

This is a teaching setting, labelled "injected knowledge" wherever it shows; RWKU's own setting is
real-world knowledge the model acquired in pre-training (profiles without `inject`).

The injected model is cached on disk, keyed by (base model, targets and their probe texts, settings),
so it is built once per machine.
"""
from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import torch

from . import models
from .data import RWKU
from .errors import RwkuError
from . import jobs
from .paths import atomic_write_json, cache_dir
from .prompts import probe_prompt
from .results import slug
from .training import pair_examples, sft_loss, train

INJECTED_SETS = (("forget", 1), ("forget", 2), ("neighbor", 1), ("neighbor", 2))
FORMAT = 1  # bump when the pair format or training recipe changes: old caches are then not reused
REAL, INJECTED = "real-world knowledge", "injected knowledge"


def injection_pairs(tokenizer, targets) -> list[tuple[str, str]]:
    """(evaluation prompt, answer + EOS) for every forget L1/L2 and neighbor L1/L2 probe of `targets`."""
    pairs = []
    for target in targets:
        for split, level in INJECTED_SETS:
            probes = target.forget(level) if split == "forget" else target.neighbor(level)
            for probe in probes:
                # The prompt is exactly what evaluation feeds; the answer follows "Answer:" after a space.
                pairs.append((probe_prompt(tokenizer, probe, level), f" {probe['answer']}{tokenizer.eos_token}"))
    if not pairs:
        names = ", ".join(t.name for t in targets) or "(none)"
        raise RwkuError(f"No forget/neighbor level-1/2 probes to inject for targets {names}; check `inject`.")
    return pairs


def settings(params: dict) -> dict:
    """The injection settings of a profile (the parts of it that shape the injected model), with the CPU
    kernel pins where it trains on the CPU (they change its weights' last bits)."""
    out = {"targets": params["inject"], "lr": float(params["inject_lr"]), "epochs": params["inject_epochs"],
           "batch_size": params["inject_batch_size"], "max_length": params["max_length"],
           "seed": params["seed"], "dtype": params["dtype"]}
    if models.resolve_device(params["device"]).type == "cpu":
        out["kernels"] = jobs.cpu_kernels()
    weights = models.fingerprint(params["model"])
    if weights:  # injected into a local model directory: its content
        out["weights"] = weights
    return out


def cache_key(model_id: str, targets, pairs: list[tuple[str, str]], setting: dict) -> str:
    """Hex digest naming an injected model: base model, targets, the exact pairs, settings, FORMAT."""
    blob = json.dumps({"model": model_id, "targets": [[t.index, t.name] for t in targets], "pairs": pairs,
                       "settings": {k: v for k, v in setting.items() if k != "targets"}, "format": FORMAT},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def model_label(params: dict) -> str:
    """The model's name in the results store and tables: the base id, plus `+injected-<key>` if injected."""
    if not params["inject"]:
        return params["model"]
    return _label(params, plan(params)[1])


def knowledge(params: dict) -> str:
    """'injected knowledge' or 'real-world knowledge', for tables, figures and notebook text."""
    return INJECTED if params["inject"] else REAL


def caption(params: dict, evaluated=None) -> str:
    """One line naming what a table or figure is about: model, kind of knowledge, profile, and the targets it
    evaluates (`evaluated`) where they are not the profile's (notebooks 04 and 08 may take fewer)."""
    what = knowledge(params)
    if params["inject"]:
        what += f" of targets {params['inject']}"
    only = f", evaluated on targets {evaluated}" if evaluated is not None and evaluated != params["targets"] else ""
    return f"{params['model']}, {what}{only} (profile {params['profile']})"


def plan(params: dict) -> tuple[list[tuple[str, str]], str, list]:
    """(injection pairs, cache key, targets) of a profile that injects knowledge (no weights loaded)."""
    targets = RWKU(params["data"]).select(params["inject"])
    pairs = injection_pairs(models.load_tokenizer(params["model"]), targets)
    return pairs, cache_key(params["model"], targets, pairs, settings(params)), targets


def load(params: dict):
    """(model, tokenizer, label) a profile evaluates: the base model, or its injected version (cached)."""
    if not params["inject"]:
        model, tokenizer = models.load_model(params["model"], params["device"], params["dtype"])
        return model, tokenizer, params["model"]
    pairs, key, targets = plan(params)
    final = cache_dir() / "injected" / f"{slug(params['model'])}-{key}"

    def build(tmp):
        base, tokenizer = models.load_model(params["model"], params["device"], params["dtype"])
        losses = inject(base, tokenizer, pairs, settings(params))
        base.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "injection.json", {
            "base_model": params["model"], "targets": [[t.index, t.name] for t in targets],
            "pairs": len(pairs), "settings": settings(params), "format": FORMAT, "losses": losses})

    model, tokenizer = models.load_model(models.build_once(final, build), params["device"], params["dtype"])
    return model, tokenizer, _label(params, key)


def _label(params: dict, key: str) -> str:
    return f"{params['model']}+injected-{key}"


def inject(model, tokenizer, pairs: list[tuple[str, str]], setting: dict) -> list[float]:
    """Fine-tune `model` in place on `pairs` (full fine-tuning, answer-only loss); returns step losses."""
    seed = setting["seed"]
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(True)
    examples = pair_examples(tokenizer, pairs, setting["max_length"])
    # Warmup over a tenth of the run, then cosine decay, as in every rwku_nb training run.
    steps = -(-len(examples) // setting["batch_size"]) * setting["epochs"]
    losses = train(model, tokenizer, examples, sft_loss, setting["lr"], setting["epochs"], setting["batch_size"],
                   warmup_steps=max(1, steps // 10), seed=seed, desc="inject knowledge")
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return losses
