"""The single-target sweep: for every target, every (method, variant) starts from the original
weights, unlearns, and is evaluated; each finished result is stored at once, and a rerun skips it."""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import injection, models, results
from .config import load_profile, make_params
from .corpus import generate_corpus, provided_corpus
from .data import RWKU
from .evaluate import evaluate_mia, evaluate_probes, summarize_probes
from .methods import METHODS, Context


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def jobs(params: dict) -> list[tuple[str, str]]:
    """(method, variant) pairs of a profile; untrained methods have the single variant 'none'."""
    out = []
    for method in params["methods"]:
        if METHODS[method].trains:
            out += [(method, v) for v in params["variants"]]
        else:
            out.append((method, "none"))
    return out


def forget_corpus(model, tokenizer, target, params: dict, label: str) -> list[str]:
    """The forget corpus of a target as the profile asks for it (generated zero-shot by the model
    named `label`, or provided)."""
    if params["corpus"] == "provided":
        return provided_corpus(target, "positive", params["corpus_size"])
    return generate_corpus(model, tokenizer, target, label, params["corpus_size"],
                           params["corpus_max_new_tokens"], params["corpus_batch_size"], params["seed"])


def evaluate_target(model, tokenizer, target, params: dict, icu: bool = False) -> tuple[list[dict], list[dict]]:
    """(metric rows, per-probe predictions) of one target under the profile's evaluation settings."""
    preds = evaluate_probes(model, tokenizer, target, icu=icu, batch_size=params["eval_batch_size"],
                            max_new_tokens=params["max_new_tokens"], stop=params["stop"])
    rows = summarize_probes(preds, params["scorer"])
    rows += evaluate_mia(model, tokenizer, target, icu=icu, batch_size=params["mia_batch_size"])
    return rows, preds


def run_sweep(params: dict | str, model_and_tokenizer=None):
    """Run (or resume) a profile's sweep; returns the profile's tidy result rows as a DataFrame.

    The model is the profile's base model, or its knowledge-injected version if the profile has `inject`
    (built once and cached); `model_and_tokenizer` overrides it (tests pass a tiny model).
    """
    params = load_profile(params) if isinstance(params, str) else make_params(params)
    data = RWKU(params["data"])
    targets = data.select(params["targets"])
    label = injection.model_label(params)
    todo = [(t, m, v) for t in targets for m, v in jobs(params)
            if not results.result_path(params["profile"], label, m, v, t.index).exists()]
    if todo:
        if model_and_tokenizer is None:
            model, tokenizer, label = injection.load(params)
        else:
            model, tokenizer = model_and_tokenizer
        original = models.snapshot_weights(model)
        for target, method, variant in tqdm(todo, desc="sweep"):
            run_one(model, tokenizer, original, target, method, variant, params, label)
    return results.load_rows(params["profile"], label)


def before_rows(params: dict | str):
    """'Before' rows of the model as released and, if the profile injects knowledge, of the injected
    model, with a `knowledge` column ('real-world knowledge' / 'injected knowledge')."""
    params = load_profile(params) if isinstance(params, str) else make_params(params)
    frames = []
    for inject_spec in (None, params["inject"]) if params["inject"] else (None,):
        p = {**params, "methods": ["before"], "inject": inject_spec}
        rows = run_sweep(p).query("method == 'before'")
        frames.append(rows.assign(knowledge=injection.knowledge(p)))
    return pd.concat(frames, ignore_index=True)


def run_one(model, tokenizer, original, target, method: str, variant: str, params: dict, label: str) -> None:
    """Unlearn one target with one method from the original weights, evaluate, store the result."""
    spec = METHODS[method]
    models.restore_weights(model, original)
    seed_everything(params["seed"])
    corpus = forget_corpus(model, tokenizer, target, params, label) if spec.trains else []
    seed_everything(params["seed"])
    ctx_model = model
    if spec.trains and variant == "lora":
        ctx_model = models.add_lora(model, params["lora_r"], params["lora_alpha"], params["lora_dropout"],
                                   tuple(params["lora_target_modules"]))
    elif spec.trains:
        for p in model.parameters():
            p.requires_grad_(True)
    ctx = Context(ctx_model, tokenizer, target, corpus, params, variant)
    try:
        how = spec.run(ctx)
        ctx_model.eval()
        rows, preds = evaluate_target(ctx_model, tokenizer, target, params, icu=how.get("icu", False))
    finally:
        if ctx_model is not model:
            models.remove_lora(ctx_model)
        models.restore_weights(model, original)
    meta = {"model": label, "base_model": params["model"], "knowledge": injection.knowledge(params),
            "method": method, "variant": variant,
            "target_index": target.index, "target": target.name, "profile": params["profile"],
            "corpus": params["corpus"], "corpus_size": len(corpus), "scorer": params["scorer"],
            "stop": params["stop"], "seed": params["seed"]}
    tidy = [{**{k: meta[k] for k in ("model", "method", "variant", "target_index", "target")}, **r} for r in rows]
    path = results.result_path(params["profile"], label, method, variant, target.index)
    results.save_result(path, meta, tidy, preds, ctx.info)
