"""Profiles: one YAML file of plain values per hardware setting (params/<profile>.yaml), validated.

A profile holds exactly the keys of `DEFAULTS`; an unknown key, or a value of the wrong type, is an
error naming the file, the key and what was expected. Notebooks receive the same keys as papermill
parameters and pass them back through `make_params`, so a notebook and a profile cannot drift apart.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from .errors import RwkuError
from .paths import REPO_ROOT

PARAMS_DIR = REPO_ROOT / "params"

# Method hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and
# hyperparameters"); CPU profiles scale them for a 135M model and a tiny corpus.
# Method hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and
# hyperparameters"); `batch` is the batch-target setting (full fine-tuning). DPO's official "2x4" (batch 2,
# 4 accumulation steps) is written as its effective batch of 8. CPU profiles scale them for a 135M model.
DEFAULT_HPARAMS = {
    "ga": {"full": {"lr": 6e-8, "epochs": 3, "batch_size": 8}, "lora": {"lr": 1e-5, "epochs": 3, "batch_size": 8},
           "batch": {"lr": 3e-8, "epochs": 2, "batch_size": 8}},
    "ga_passage": {"full": {"lr": 1e-6, "epochs": 4, "batch_size": 4},
                   "lora": {"lr": 2e-5, "epochs": 6, "batch_size": 4}},
    "npo": {"full": {"lr": 2e-6, "epochs": 3, "batch_size": 16}, "lora": {"lr": 5e-5, "epochs": 3, "batch_size": 16},
            "batch": {"lr": 1e-6, "epochs": 2, "batch_size": 16}},
    "dpo": {"full": {"lr": 5e-6, "epochs": 3, "batch_size": 8}, "lora": {"lr": 6e-5, "epochs": 3, "batch_size": 8},
            "batch": {"lr": 2e-6, "epochs": 2, "batch_size": 8}},
    "rt": {"full": {"lr": 4e-7, "epochs": 3, "batch_size": 8}, "lora": {"lr": 3e-5, "epochs": 3, "batch_size": 8},
           "batch": {"lr": 1e-7, "epochs": 1, "batch_size": 8}},
}
# The seed-0 paper's methods (GA-seq, TA, SGA, TAU) as RWKU baselines: its GPT-Neo setting (Adam lr 5e-5,
# batch 8; seed code experiments/configs/*/config_*.json) with RWKU's 3-epoch budget as the epoch cap (they
# stop earlier once the forget corpus' mean MA is below sga_stop). Not tuned for RWKU's models.
for _m in ("ga_seq", "ta", "sga", "tau"):
    DEFAULT_HPARAMS[_m] = {v: {"lr": 5e-5, "epochs": 3, "batch_size": 8} for v in ("full", "lora", "batch")}
HPARAM_VARIANTS = ("full", "lora", "batch")
_LAYERS_RE = re.compile(r"^layers-(\d+)-(\d+)$")

DEFAULTS = {
    "profile": "custom",          # name used in result paths and figure names
    "model": "smollm2-135m-instruct",  # alias, local directory or hub id
    "device": "auto",             # auto | cpu | cuda
    "dtype": "auto",              # auto (cuda: bfloat16, cpu: float32) | float32 | bfloat16 | float16
    "data": None,                 # local RWKU dir or "hub"; None -> env RWKU_DATA
    "targets": "1",               # index, name, range "1-5", list, or "all"
    "methods": ["before", "icu", "repe", "ga_passage", "ga", "dpo", "npo", "rt"],  # Table 1's thirteen rows
    "variants": ["full", "lora"],  # full fine-tuning, LoRA (r 8, alpha 16, q_proj, v_proj), or layers-A-B
    "corpus": "generated",        # generated (zero-shot, by the model itself) | provided (positive.json)
    "corpus_size": 8,             # samples per training corpus and target (positive, negative, reject, passages)
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
    "dpo_beta": 0.1,              # official DPO beta
    "repe_alpha": 1.0,            # RepE steering weight of the Table 1 row (paper: 0.5, 1, 1.5)
    "repe_alphas": [0.5, 1.0, 1.5],  # RepE trade-off curve points
    "repe_layer": None,           # decoder layer RepE reads and steers; None -> the middle one
    "curve": False,               # trade-off curves: also evaluate probes after every training epoch
    "hparams": DEFAULT_HPARAMS,   # per method, per variant: lr, epochs, batch_size
    "eval_batch_size": 32,
    "mia_batch_size": 8,
    "max_new_tokens": 30,         # official: 30 new tokens for forget/neighbor probes
    "stop": "newline",            # newline (rwku_nb) | official (parity with the official code)
    "scorer": "rwku",             # rwku (pltrdy `rouge` semantics, official) | rouge-score
    # Utility (Table 1's last five columns), measured after single-target unlearning with the MIA.
    "utility": ["mmlu", "bbh", "truthfulqa", "triviaqa", "fluency"],
    "utility_size": None,         # items per utility set (spread evenly); None -> all 500 (the paper)
    "utility_batch_size": 8,
    "seed": 0,
    "memorization_size": 64,      # texts per kind in notebook 01's EM/NLL comparison (paper Fig. 2)
    # Knowledge injection (rwku_nb.injection): teach the model its targets' forget/neighbor L1-L2 facts first.
    "inject": None,               # None (real-world knowledge, RWKU's setting) or a target spec
    "inject_lr": 3e-5,            # full fine-tuning, AdamW, answer tokens only
    "inject_epochs": 4,
    "inject_batch_size": 8,
    # Batch-target unlearning (notebook 03): the first N of `batch_targets` unlearned at once, N in batch_sizes.
    "batch_targets": "1-50",
    "batch_sizes": [10, 20, 30, 40, 50],
    "batch_methods": ["ga", "dpo", "npo", "rt"],
    "batch_variant": "full",      # full fine-tuning (the paper) | lora (where full does not fit, e.g. a T4)
    # Partial-layer training (notebook 04): full fine-tuning of decoder layers [a, b) only, per window.
    "layer_windows": [[0, 4], [4, 8], [8, 12], [12, 16], [16, 20], [20, 24], [24, 28], [28, 32]],
    "layer_methods": ["ga", "dpo", "npo", "rt"],
    # The seed-0 paper (rwku_nb.selective; notebook 07). Paper defaults (Barbulescu & Triantafillou 2024,
    # seed code configs): SGA keeps ascending on sequences with MA >= 0.70 (plus the most memorized one) and
    # stops at mean MA < 0.33; TAU switches to task arithmetic at mean MA < 0.5 with c = -1; TA: gamma 0,
    # switch 0.9, c = -3. Adam betas (0.9, 0.98), lr 5e-5, batch 8, up to 150 epochs, 200-token sequences.
    "sga_gamma": 0.70,
    "sga_stop": 0.33,             # RWKU runs stop here; notebook 07 uses `selective_stop`
    "tau_switch": 0.50,
    "tau_coef": -1.0,
    "ta_gamma": 0.0,
    "ta_switch": 0.90,
    "ta_coef": -3.0,
    "selective_betas": [0.9, 0.98],
    "selective_methods": ["ga_seq", "ta", "sga", "tau"],
    "selective_variants": ["full"],
    "selective_data": "extraction",  # extraction (Pile subsets, GPT-Neo) | rwku (the model's most memorized texts)
    "selective_file": "lm_extraction_32_0.csv",  # extraction: which subset (N sequences, seed)
    "selective_unseen": "wikitext",  # threshold text: wikitext | lambada (extraction); heldout | counterfactual (rwku)
    "selective_size": None,       # forget sequences (rwku: the top by MA; extraction: the first N); None = all
    "selective_length": 200,      # tokens per sequence (the extraction benchmark's 200)
    "selective_stop": "unseen",   # stop when mean MA < this: "unseen" (the unseen-text threshold) or a number
    "selective_lr": 5e-5,
    "selective_epochs": 150,      # the cap; the stopping rule usually ends runs far earlier
    "selective_batch_size": 8,
    "el_n": 10,                   # EL_10, the seed paper's main n
    "el_stride": 1,               # evaluate EL at every stride-th prefix length (1 = exact; CPU profiles coarser)
    "ppl_size": None,             # validation texts of valid_wikitext / valid_lambada for perplexity; None = all
    "ppl_max_length": 512,
}

_TYPES = {
    "profile": str, "model": str, "device": str, "dtype": str, "data": (str, type(None)),
    "targets": (str, int, list), "methods": list, "variants": list, "corpus": str,
    "corpus_size": int, "corpus_max_new_tokens": int, "corpus_batch_size": int, "max_length": int,
    "grad_accum": int, "warmup_steps": int, "lora_r": int, "lora_alpha": int,
    "lora_dropout": (int, float), "lora_target_modules": list, "npo_beta": (int, float), "hparams": dict,
    "eval_batch_size": int, "mia_batch_size": int, "max_new_tokens": int, "stop": str,
    "scorer": str, "seed": int, "utility": list, "utility_size": (int, type(None)), "utility_batch_size": int,
    "memorization_size": int, "inject": (str, int, list, type(None)), "inject_lr": (int, float, str),
    "inject_epochs": int, "inject_batch_size": int, "dpo_beta": (int, float), "repe_alpha": (int, float),
    "repe_alphas": list, "repe_layer": (int, type(None)), "curve": bool, "batch_targets": (str, int, list),
    "batch_sizes": list, "batch_methods": list, "batch_variant": str, "layer_windows": list, "layer_methods": list,
    "sga_gamma": (int, float), "sga_stop": (int, float), "tau_switch": (int, float), "tau_coef": (int, float),
    "ta_gamma": (int, float), "ta_switch": (int, float), "ta_coef": (int, float), "selective_betas": list,
    "selective_methods": list, "selective_variants": list, "selective_data": str, "selective_file": str,
    "selective_unseen": str, "selective_size": (int, type(None)), "selective_length": int,
    "selective_stop": (str, int, float), "selective_lr": (int, float, str), "selective_epochs": int,
    "selective_batch_size": int, "el_n": int, "el_stride": int, "ppl_size": (int, type(None)),
    "ppl_max_length": int,
}
_CHOICES = {
    "corpus": ("generated", "provided"),
    "stop": ("newline", "official"),
    "scorer": ("rwku", "rouge-score"),
    "utility": ("mmlu", "bbh", "truthfulqa", "triviaqa", "fluency"),
    "selective_methods": ("ga_seq", "ta", "sga", "tau"),
    "selective_variants": ("full", "lora"),
    "batch_variant": ("full", "lora"),
    "selective_data": ("extraction", "rwku"),
}
_UNSEEN = {"extraction": ("wikitext", "lambada"), "rwku": ("heldout", "counterfactual")}
# Sizes and counts that must be at least 1 (0 would e.g. make an empty forget corpus or an empty batch).
_POSITIVE = ("corpus_size", "corpus_max_new_tokens", "corpus_batch_size", "max_length", "grad_accum", "lora_r",
             "lora_alpha", "eval_batch_size", "mia_batch_size", "max_new_tokens", "utility_batch_size",
             "memorization_size")


def profile_path(profile: str) -> Path:
    """params/<profile>.yaml, or `profile` itself if it is a path to a YAML file."""
    path = Path(profile)
    if path.suffix in (".yaml", ".yml"):
        return path
    return PARAMS_DIR / f"{profile}.yaml"


def load_profile(profile: str, overrides: dict | None = None) -> dict:
    """The validated parameters of a profile file (defaults filled in), `overrides` taking precedence.
    A profile may name another as its `base` and state only what differs (keys replace the base's whole)."""
    path = profile_path(profile)
    raw, source = _read_profile(path, ())
    if not overrides:
        return make_params(raw, source=source)
    if not isinstance(overrides, dict):
        raise RwkuError(f"overrides of {path} must be a mapping of parameter names to values, got {overrides!r}.")
    return make_params({**raw, **overrides}, source=f"{source} with overrides {sorted(overrides)}")


def _read_profile(path: Path, children: tuple[Path, ...]) -> tuple[dict, str]:
    """A profile file's keys over those of its `base` chain, and the source to name in errors."""
    if not path.exists():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        via = f" (the base of {children[-1]})" if children else ""
        raise RwkuError(f"No profile file {path}{via}. Known profiles: {', '.join(known)}.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RwkuError(f"{path}: not valid YAML ({e}). Fix the syntax at the line shown: one `key: value` "
                        "per line, lists as [a, b].") from None
    if not isinstance(raw, dict):
        raise RwkuError(f"{path}: expected a mapping of parameter names to values, got {type(raw).__name__}.")
    if "base" not in raw:
        return raw, str(path)
    base = raw.pop("base")
    if not isinstance(base, str) or not base.strip():
        raise RwkuError(f"{path}: key 'base' has value {base!r}; expected the name of another profile "
                        "(e.g. base: gpu-llama3-8b).")
    base_path = profile_path(base)
    if base_path.resolve() in {c.resolve() for c in (*children, path)}:
        chain = " -> ".join(str(c) for c in (*children, path, base_path))
        raise RwkuError(f"{path}: key 'base': profiles extend each other in a cycle ({chain}); remove one 'base'.")
    inherited, source = _read_profile(base_path, (*children, path))
    # its own results store: a profile that extends another is named after its file unless it says otherwise
    return {**inherited, "profile": path.stem, **raw}, f"{path} (base {source})"


def parse_overrides(text: str) -> dict:
    """The `-y/--overrides` of the command-line tools: a YAML mapping of profile keys (empty: none)."""
    try:
        overrides = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise RwkuError(f"--overrides {text!r} is not valid YAML ({e}).") from None
    if not isinstance(overrides, dict):
        raise RwkuError(f"--overrides {text!r}: expected a mapping of profile keys, e.g. \"{{targets: '1-8'}}\".")
    return overrides


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
    for key in _POSITIVE:
        if params[key] < 1:
            raise RwkuError(f"{source}: key {key!r} has value {params[key]!r}; expected a positive whole number.")
    params["inject_lr"] = _number(params["inject_lr"], float, f"{source}: key 'inject_lr'")
    for key in ("inject_epochs", "inject_batch_size"):
        _number(params[key], int, f"{source}: key {key!r}")
    for key, choices in _CHOICES.items():
        vals = params[key] if isinstance(params[key], list) else [params[key]]
        for v in vals:
            if v not in choices:
                raise RwkuError(f"{source}: key {key!r} has value {v!r}; expected one of {list(choices)}.")
    for v in params["variants"]:
        if v not in ("full", "lora") and not _LAYERS_RE.match(str(v)):
            raise RwkuError(f"{source}: key 'variants' has value {v!r}; expected 'full', 'lora' or "
                            "'layers-A-B' (train decoder layers A..B-1 only).")
    for key in ("methods", "batch_methods", "layer_methods"):
        for m in params[key]:
            if m not in METHODS:
                raise RwkuError(f"{source}: unknown method {m!r} in {key!r}; known methods: {sorted(METHODS)}.")
            if key != "methods" and not METHODS[m].trains:
                raise RwkuError(f"{source}: {key!r} lists {m!r}, which trains nothing; use trained methods "
                                f"({_trained()}).")
    for window in params["layer_windows"]:
        if not (isinstance(window, list) and len(window) == 2 and all(_is_int(x) for x in window)
                and 0 <= window[0] < window[1]):
            raise RwkuError(f"{source}: 'layer_windows' entry {window!r} must be [start, stop] with 0 <= start < stop.")
    _check_selective(params, source)
    if params["utility_size"] is not None and params["utility_size"] < 1:
        raise RwkuError(f"{source}: key 'utility_size' has value {params['utility_size']!r}; expected a positive "
                        "whole number of items per utility set, or null for all of them.")
    for size in params["batch_sizes"]:
        if not _is_int(size) or size < 1:
            raise RwkuError(f"{source}: 'batch_sizes' entry {size!r} must be a positive whole number.")
    for alpha in params["repe_alphas"]:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
            raise RwkuError(f"{source}: 'repe_alphas' entry {alpha!r} must be a number.")
    hp = copy.deepcopy(DEFAULT_HPARAMS)
    for method, per_variant in params["hparams"].items():
        if method not in METHODS or not METHODS[method].trains:
            raise RwkuError(f"{source}: hparams names {method!r}, which is not a trained method ({_trained()}).")
        if not isinstance(per_variant, dict) or set(per_variant) - set(HPARAM_VARIANTS):
            raise RwkuError(f"{source}: hparams.{method} must map 'full'/'lora'/'batch' to settings, "
                            f"got {per_variant!r}.")
        for variant, settings in per_variant.items():
            bad = set(settings) - {"lr", "epochs", "batch_size"}
            if bad:
                raise RwkuError(f"{source}: hparams.{method}.{variant} has unknown key(s) {sorted(bad)}; "
                                "valid: lr, epochs, batch_size.")
            for name, value in settings.items():
                settings[name] = _number(value, float if name == "lr" else int,
                                         f"{source}: hparams.{method}.{variant}.{name}")
            hp.setdefault(method, {}).setdefault(variant, {}).update(settings)
    for method in params["methods"] + params["batch_methods"] + params["layer_methods"]:
        if METHODS[method].trains and method not in hp:
            raise RwkuError(f"{source}: method {method!r} needs hparams.{method}.full/lora (lr, epochs, batch_size).")
    params["hparams"] = hp
    return params


def _check_selective(params: dict, source: str) -> None:
    """The seed-0 paper's keys: consistent data/unseen choice, thresholds in [0, 1], positive sizes."""
    data, unseen = params["selective_data"], params["selective_unseen"]
    if unseen not in _UNSEEN[data]:
        raise RwkuError(f"{source}: key 'selective_unseen' has value {unseen!r}; with selective_data {data!r} "
                        f"expected one of {list(_UNSEEN[data])}.")
    for key in ("sga_gamma", "sga_stop", "tau_switch", "ta_gamma", "ta_switch"):
        if not 0 <= params[key] <= 1:
            raise RwkuError(f"{source}: key {key!r} has value {params[key]!r}; expected an MA between 0 and 1.")
    stop = params["selective_stop"]
    if isinstance(stop, bool) or (isinstance(stop, str) and stop != "unseen") or \
            (not isinstance(stop, str) and not 0 <= stop <= 1):
        raise RwkuError(f"{source}: key 'selective_stop' has value {stop!r}; expected 'unseen' or an MA in [0, 1].")
    betas = params["selective_betas"]
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                                  for b in betas):
        raise RwkuError(f"{source}: key 'selective_betas' has value {betas!r}; expected two numbers in [0, 1).")
    params["selective_lr"] = _number(params["selective_lr"], float, f"{source}: key 'selective_lr'")
    for key in ("selective_length", "selective_epochs", "selective_batch_size", "el_n", "el_stride",
                "ppl_max_length"):
        _number(params[key], int, f"{source}: key {key!r}")
    for key in ("selective_size", "ppl_size"):
        if params[key] is not None:
            _number(params[key], int, f"{source}: key {key!r}")
    if params["el_n"] >= params["selective_length"]:
        raise RwkuError(f"{source}: el_n {params['el_n']} must be smaller than selective_length "
                        f"{params['selective_length']} (EL_n needs suffixes of at least n tokens).")


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


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def layer_window(variant: str) -> tuple[int, int] | None:
    """(start, stop) of a 'layers-A-B' variant, None for full/lora/none."""
    m = _LAYERS_RE.match(variant)
    return (int(m.group(1)), int(m.group(2))) if m else None


def hparams_for(params: dict, method: str, variant: str, n_targets: int = 1) -> dict:
    """lr, epochs, batch_size of `method` for a variant: partial-layer runs use 'full'; batch-target runs
    with full fine-tuning use 'batch' where the profile gives it (the paper has no LoRA batch setting)."""
    per = params["hparams"][method]
    if n_targets > 1 and "batch" in per and variant == "full":
        return dict(per["batch"])
    return dict(per["full" if variant.startswith("layers-") else variant])


def layer_variants(params: dict) -> list[str]:
    """The partial-layer variants of a profile's layer windows: 'layers-A-B'."""
    return [f"layers-{a}-{b}" for a, b in params["layer_windows"]]


def _trained() -> str:
    from .methods import METHODS

    return ", ".join(sorted(m for m, spec in METHODS.items() if spec.trains))


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join("null" if x is type(None) else x.__name__ for x in t)
    return t.__name__


def notebook_params(profile: str, overrides: dict | None = None) -> dict:
    """A notebook's validated parameters: params/<profile>.yaml with `overrides` (a dict of profile keys)
    on top. A notebook's parameters cell holds just `profile` and `overrides`, so the YAML file is the one
    place parameters live (`papermill -p profile gpu-llama3-8b`, or `-y "overrides: {targets: '1-5'}"`)."""
    return load_profile(profile, overrides)
