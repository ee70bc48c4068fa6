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

from .defaults import _CHOICES, _POSITIVE, _TYPES, _UNSEEN, DEFAULT_HPARAMS, DEFAULTS, HPARAM_VARIANTS  # noqa: F401
from .errors import RwkuError
from .paths import REPO_ROOT

PARAMS_DIR = REPO_ROOT / "params"

_LAYERS_RE = re.compile(r"^layers-(\d+)-(\d+)$")


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
    _check_robustness(params, source)
    for key in ("methods", "batch_methods", "layer_methods", "robust_methods"):
        for m in params[key]:
            if m not in METHODS:
                raise RwkuError(f"{source}: unknown method {m!r} in {key!r}; known methods: {sorted(METHODS)}.")
            # robustness may attack the untouched model (`before`: how much relearning adds to it; the
            # evaluate command's checkpoint)
            if key != "methods" and not METHODS[m].trains and not (key == "robust_methods" and m == "before"):
                raise RwkuError(f"{source}: {key!r} lists {m!r}, which trains nothing; use trained methods "
                                f"({_trained()}){' or before' if key == 'robust_methods' else ''}.")
    for window in params["layer_windows"]:
        if not (isinstance(window, list) and len(window) == 2 and all(_is_int(x) for x in window)
                and 0 <= window[0] < window[1]):
            raise RwkuError(f"{source}: 'layer_windows' entry {window!r} must be [start, stop] with 0 <= start < stop.")
    _check_selective(params, source)
    for key in ("npo_beta", "dpo_beta", "simnpo_beta", "rmu_steering"):
        if params[key] <= 0:
            raise RwkuError(f"{source}: key {key!r} has value {params[key]!r}; expected a positive number.")
    if params["rmu_alpha"] < 0 or (params["rmu_layer"] is not None and params["rmu_layer"] < 0):
        raise RwkuError(f"{source}: keys 'rmu_alpha' ({params['rmu_alpha']!r}) and 'rmu_layer' "
                        f"({params['rmu_layer']!r}) must not be negative.")
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
    for method in params["methods"] + params["batch_methods"] + params["layer_methods"] + params["robust_methods"]:
        if METHODS[method].trains and method not in hp:
            raise RwkuError(f"{source}: method {method!r} needs hparams.{method}.full/lora (lr, epochs, batch_size).")
    params["hparams"] = hp
    return params


def _check_robustness(params: dict, source: str) -> None:
    """The attack keys: increasing positive step counts, bit widths 2..8."""
    steps = params["relearn_steps"]
    if not all(_is_int(k) and k >= 1 for k in steps) or steps != sorted(set(steps)):
        raise RwkuError(f"{source}: key 'relearn_steps' has value {steps!r}; expected increasing positive whole "
                        "numbers of steps, e.g. [5, 10, 20] (0, the unlearned model itself, is always evaluated).")
    for bits in params["quant_bits"]:
        if not _is_int(bits) or not 2 <= bits <= 8:
            raise RwkuError(f"{source}: 'quant_bits' entry {bits!r} must be a whole number of bits from 2 to 8.")
    params["relearn_lr"] = _number(params["relearn_lr"], float, f"{source}: key 'relearn_lr'")


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
