"""Profiles: one YAML file of plain values per hardware setting (params/<profile>.yaml), validated.

A profile holds only declared keys (rwku_nb.settings, and each method's own); an unknown key, or a value of
the wrong type or out of range, is an error naming the file, the key and what was expected. Notebooks receive the same keys as papermill
parameters and pass them back through `make_params`, so a notebook and a profile cannot drift apart.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from .settings import HPARAM_VARIANTS, SETTINGS, defaults
from .errors import RwkuError
from .paths import REPO_ROOT

PARAMS_DIR = REPO_ROOT / "params"

_LAYERS_RE = re.compile(r"^layers-(\d+)-(\d+)$")
# The unseen text of each kind of selective data (notebook 07's threshold).
_UNSEEN = {"extraction": ("wikitext", "lambada"), "rwku": ("heldout", "counterfactual")}


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
    """Defaults overlaid with `values`, validated against the declared settings (rwku_nb.settings and each
    method's own); errors name `source` and the key."""
    from .methods import METHODS  # registry (its modules declare their keys); imported late: config needs no torch

    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        raise RwkuError(
            f"{source}: unknown key(s) {unknown}. Valid keys: {', '.join(SETTINGS)}. "
            "Fix the spelling or remove the key."
        )
    params = defaults()
    for key, value in values.items():
        expected = SETTINGS[key].types
        numeric = expected in (int, (int, float))
        if not isinstance(value, expected) or (numeric and isinstance(value, bool)):
            raise RwkuError(
                f"{source}: key {key!r} has value {value!r} of type {type(value).__name__}; "
                f"expected {_type_name(expected)}."
            )
        params[key] = value
    for key, setting in SETTINGS.items():
        params[key] = _checked(params[key], key, setting, source)
    for v in params["variants"]:
        if v not in ("full", "lora") and not _LAYERS_RE.match(str(v)):
            raise RwkuError(f"{source}: key 'variants' has value {v!r}; expected 'full', 'lora' or "
                            "'layers-A-B' (train decoder layers A..B-1 only).")
    for key in ("methods", "batch_methods", "layer_methods", "robust_methods"):
        for m in params[key]:
            if m not in METHODS:
                raise RwkuError(f"{source}: unknown method {m!r} in {key!r}; known methods: {sorted(METHODS)}.")
            # robustness may attack the untouched model (`before`: how much relearning adds to it; the
            # evaluate command's checkpoint); batches may be unlearned by ICU and RepE too (paper Fig. 5)
            allowed = {"robust_methods": {"before"}, "batch_methods": {"icu", "repe"}}.get(key, set())
            if key != "methods" and not METHODS[m].trains and m not in allowed:
                raise RwkuError(f"{source}: {key!r} lists {m!r}, which trains nothing; use trained methods "
                                f"({_trained()}){''.join(f' or {a}' for a in sorted(allowed))}.")
    extra = [u for u in params["curve_utility"] or () if u not in params["utility"]]
    if extra:
        raise RwkuError(f"{source}: key 'curve_utility' lists {extra}, which key 'utility' {params['utility']} leaves "
                        "out; a curve point measures some of the final model's utility sets, not others.")
    _check_selective(params, source)
    params["hparams"] = _hparams(params, source)
    return params


def _checked(value, key: str, setting, source: str):
    """One key's value checked against its declaration (positive, numeric, choices, its own check)."""
    if setting.positive and value < 1:
        raise RwkuError(f"{source}: key {key!r} has value {value!r}; expected a positive whole number.")
    if setting.number and value is not None:
        value = _number(value, setting.number, f"{source}: key {key!r}")
    for v in (value if isinstance(value, list) else [value]) if setting.choices else ():
        if v not in setting.choices:
            raise RwkuError(f"{source}: key {key!r} has value {v!r}; expected one of {list(setting.choices)}.")
    problem = setting.check(value) if setting.check else None
    if problem:
        raise RwkuError(f"{source}: {problem}")
    return value


def _hparams(params: dict, source: str) -> dict:
    """Each method's declared hyperparameters (`register(..., hparams=...)`), the profile's `hparams` over them."""
    from .methods import METHODS

    hp = {m: copy.deepcopy(spec.hparams) for m, spec in METHODS.items() if spec.hparams}
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
    return hp


def _check_selective(params: dict, source: str) -> None:
    """The seed-0 paper's keys that depend on each other: the unseen text of the data, EL_n's n and the length."""
    data, unseen = params["selective_data"], params["selective_unseen"]
    if unseen not in _UNSEEN[data]:
        raise RwkuError(f"{source}: key 'selective_unseen' has value {unseen!r}; with selective_data {data!r} "
                        f"expected one of {list(_UNSEEN[data])}.")
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
    key = "full" if layer_window(variant) else variant
    if key not in per:
        raise RwkuError(f"method {method!r} has no hyperparameters for variant {key!r}; add hparams.{method}.{key} "
                        "(lr, epochs, batch_size) to the profile.")
    return dict(per[key])


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
