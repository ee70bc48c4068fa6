"""Profiles: one YAML file of plain values per hardware setting (params/<profile>.yaml), validated.

A profile holds exactly the keys of `DEFAULTS`; an unknown key, or a value of the wrong type, is an
error naming the file, the key and what was expected. Notebooks receive the same keys as papermill
parameters and pass them back through `make_params`, so a notebook and a profile cannot drift apart.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .errors import RwkuError
from .paths import REPO_ROOT

PARAMS_DIR = REPO_ROOT / "params"

# Method hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and
# hyperparameters"); CPU profiles scale them for a 135M model and a tiny corpus.
DEFAULT_HPARAMS = {
    "ga": {"full": {"lr": 6e-8, "epochs": 3, "batch_size": 8}, "lora": {"lr": 1e-5, "epochs": 3, "batch_size": 8}},
    "npo": {"full": {"lr": 2e-6, "epochs": 3, "batch_size": 16}, "lora": {"lr": 5e-5, "epochs": 3, "batch_size": 16}},
}

DEFAULTS = {
    "profile": "custom",          # name used in result paths and figure names
    "model": "smollm2-135m-instruct",  # alias, local directory or hub id
    "device": "auto",             # auto | cpu | cuda
    "dtype": "auto",              # auto (cuda: bfloat16, cpu: float32) | float32 | bfloat16 | float16
    "data": None,                 # local RWKU dir or "hub"; None -> env RWKU_DATA
    "targets": "1",               # index, name, range "1-5", list, or "all"
    "methods": ["before", "icu", "ga", "npo"],
    "variants": ["full", "lora"],  # full fine-tuning and/or LoRA (r 8, alpha 16, q_proj, v_proj)
    "corpus": "generated",        # generated (zero-shot, by the model itself) | provided (positive.json)
    "corpus_size": 8,             # number of forget texts per target
    "corpus_max_new_tokens": 128,  # length of each generated forget text
    "corpus_batch_size": 8,
    "max_length": 512,            # training cutoff in tokens (official cutoff_len 512)
    "grad_accum": 1,
    "warmup_steps": 20,           # official scripts: 20 warmup steps, cosine schedule
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": ["q_proj", "v_proj"],  # RWKU's LoRA; Phi-3 fuses them into qkv_proj
    "npo_beta": 0.2,              # official NPO beta
    "hparams": DEFAULT_HPARAMS,   # per method, per variant: lr, epochs, batch_size
    "eval_batch_size": 32,
    "mia_batch_size": 8,
    "max_new_tokens": 30,         # official: 30 new tokens for forget/neighbor probes
    "stop": "newline",            # newline (rwku_nb) | official (parity with the official code)
    "scorer": "rwku",             # rwku (pltrdy `rouge` semantics, official) | rouge-score
    "seed": 0,
    # Knowledge injection (rwku_nb.injection): teach the model its targets' forget/neighbor L1-L2 facts first.
    "inject": None,               # None (real-world knowledge, RWKU's setting) or a target spec
    "inject_lr": 3e-5,            # full fine-tuning, AdamW, answer tokens only
    "inject_epochs": 4,
    "inject_batch_size": 8,
}

_TYPES = {
    "profile": str, "model": str, "device": str, "dtype": str, "data": (str, type(None)),
    "targets": (str, int, list), "methods": list, "variants": list, "corpus": str,
    "corpus_size": int, "corpus_max_new_tokens": int, "corpus_batch_size": int, "max_length": int,
    "grad_accum": int, "warmup_steps": int, "lora_r": int, "lora_alpha": int,
    "lora_dropout": (int, float), "lora_target_modules": list, "npo_beta": (int, float), "hparams": dict,
    "eval_batch_size": int, "mia_batch_size": int, "max_new_tokens": int, "stop": str,
    "scorer": str, "seed": int, "inject": (str, int, list, type(None)), "inject_lr": (int, float, str),
    "inject_epochs": int, "inject_batch_size": int,
}
_CHOICES = {
    "variants": ("full", "lora"),
    "corpus": ("generated", "provided"),
    "stop": ("newline", "official"),
    "scorer": ("rwku", "rouge-score"),
}


def profile_path(profile: str) -> Path:
    """params/<profile>.yaml, or `profile` itself if it is a path to a YAML file."""
    path = Path(profile)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PARAMS_DIR / f"{profile}.yaml"


def load_profile(profile: str) -> dict:
    """The validated parameters of a profile file (defaults filled in)."""
    path = profile_path(profile)
    if not path.exists():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise RwkuError(f"No profile file {path}. Known profiles: {', '.join(known)}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RwkuError(f"{path}: not valid YAML ({e}).") from None
    if not isinstance(raw, dict):
        raise RwkuError(f"{path}: expected a mapping of parameter names to values, got {type(raw).__name__}.")
    return make_params(raw, source=str(path))


def make_params(values: dict, source: str = "parameters") -> dict:
    """Defaults overlaid with `values`, validated; errors name `source` and the key."""
    from .methods import METHODS  # registry; imported late to keep config free of torch imports

    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise RwkuError(
            f"{source}: unknown key(s) {unknown}. Valid keys: {', '.join(DEFAULTS)}. "
            "Fix the spelling or remove the key."
        )
    params = copy.deepcopy(DEFAULTS)
    for key, value in values.items():
        expected = _TYPES[key]
        numeric = expected in (int, (int, float))
        if not isinstance(value, expected) or (numeric and isinstance(value, bool)):
            raise RwkuError(
                f"{source}: key {key!r} has value {value!r} of type {type(value).__name__}; "
                f"expected {_type_name(expected)}."
            )
        params[key] = value
    params["inject_lr"] = _number(params["inject_lr"], float, f"{source}: key 'inject_lr'")
    for key in ("inject_epochs", "inject_batch_size"):
        _number(params[key], int, f"{source}: key {key!r}")
    for key, choices in _CHOICES.items():
        vals = params[key] if isinstance(params[key], list) else [params[key]]
        for v in vals:
            if v not in choices:
                raise RwkuError(f"{source}: key {key!r} has value {v!r}; expected one of {list(choices)}.")
    for m in params["methods"]:
        if m not in METHODS:
            raise RwkuError(f"{source}: unknown method {m!r} in 'methods'; known methods: {sorted(METHODS)}.")
    hp = copy.deepcopy(DEFAULT_HPARAMS)
    for method, per_variant in params["hparams"].items():
        if method not in METHODS or not METHODS[method].trains:
            raise RwkuError(f"{source}: hparams names {method!r}, which is not a trained method ({_trained()}).")
        if not isinstance(per_variant, dict) or set(per_variant) - {"full", "lora"}:
            raise RwkuError(f"{source}: hparams.{method} must map 'full'/'lora' to settings, got {per_variant!r}.")
        for variant, settings in per_variant.items():
            bad = set(settings) - {"lr", "epochs", "batch_size"}
            if bad:
                raise RwkuError(f"{source}: hparams.{method}.{variant} has unknown key(s) {sorted(bad)}; "
                                "valid: lr, epochs, batch_size.")
            for name, value in settings.items():
                settings[name] = _number(value, float if name == "lr" else int,
                                         f"{source}: hparams.{method}.{variant}.{name}")
            hp.setdefault(method, {}).setdefault(variant, {}).update(settings)
    for method in params["methods"]:
        if METHODS[method].trains and method not in hp:
            raise RwkuError(f"{source}: method {method!r} needs hparams.{method}.full/lora (lr, epochs, batch_size).")
    params["hparams"] = hp
    return params


def _number(value, kind, where: str):
    """`value` as int/float; YAML reads 6e-8 (no dot) as a string, so numeric strings are accepted."""
    if isinstance(value, bool):
        raise RwkuError(f"{where}: got a boolean; expected a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RwkuError(f"{where}: got {value!r}; expected a number.") from None
    if kind is int:
        if number != int(number) or number < 1:
            raise RwkuError(f"{where}: got {value!r}; expected a positive whole number.")
        return int(number)
    if number <= 0:
        raise RwkuError(f"{where}: got {value!r}; expected a positive number.")
    return number


def _trained() -> str:
    from .methods import METHODS

    return ", ".join(sorted(m for m, spec in METHODS.items() if spec.trains))


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join("null" if x is type(None) else x.__name__ for x in t)
    return t.__name__


def notebook_params(namespace: dict) -> dict:
    """The validated parameters of a notebook: every profile key taken from its parameters cell."""
    return make_params({key: namespace[key] for key in DEFAULTS if key in namespace}, source="notebook parameters")
