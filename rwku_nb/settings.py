"""Every profile key, declared once: its section, default (the paper's setting where it has one), type, allowed
values and a comment saying why. A method declares its own keys and hyperparameters beside its code
(`methods.register(..., settings=..., hparams=...)`); rwku_nb.config derives the defaults, the validation and its
error messages from these declarations, and rwku_nb.jobs a method's identity from the keys it declares.

Profiles stay flat YAML files of plain values (one `key: value` per line); the sections group the keys for
readers and name them in errors. This module imports no torch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from . import schema
from .errors import RwkuError

NUMBER = (int, float)
OPTIONAL_INT = (int, type(None))
UTILITY_SETS = tuple(schema.UTILITY_SETS)  # the utility sets, by name (schema: their files)
HPARAM_VARIANTS = ("full", "lora", "batch")


@dataclass(frozen=True)
class Setting:
    """One profile key. `choices` apply to each entry of a list value; `positive`: a whole number >= 1;
    `number` (int or float): also accepts numeric strings (YAML reads 6e-8, without a dot, as a string) and
    must be positive; `check(value)` returns an error message (what follows "<file>: ") or None; `identity`:
    whether a method that declares the key has it in its results' identity (False where the identity holds it
    elsewhere, e.g. RepE's curve weights)."""

    default: object
    types: type | tuple
    choices: tuple = ()
    positive: bool = False
    number: type | None = None
    check: Callable | None = None
    identity: bool = True


SETTINGS: dict[str, Setting] = {}
SECTIONS: dict[str, list[str]] = {}


def declare(section: str, **settings: Setting) -> tuple[str, ...]:
    """Add profile keys to `section`; returns their names. Declaring a key again with a different setting is an
    error (one place per key)."""
    for name, setting in settings.items():
        if name in SETTINGS and SETTINGS[name] != setting:
            raise RwkuError(f"profile key {name!r} is declared twice with different settings; declare it once.")
        SETTINGS[name] = setting
        keys = SECTIONS.setdefault(section, [])
        if name not in keys:
            keys.append(name)
    return tuple(settings)


def section_of(key: str) -> str:
    return next(s for s, keys in SECTIONS.items() if key in keys)


def defaults() -> dict:
    """Every declared key's default (the method modules declare theirs when rwku_nb.methods is imported)."""
    return {k: copy.deepcopy(s.default) for k, s in SETTINGS.items()}


# --- checks shared by several keys -----------------------------------------------------------------------------


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def positive_number(key: str):
    return lambda v: None if v > 0 else f"key {key!r} has value {v!r}; expected a positive number."


def share(key: str):
    """An MA threshold: a number between 0 and 1."""
    return lambda v: None if 0 <= v <= 1 else f"key {key!r} has value {v!r}; expected an MA between 0 and 1."


def _entries(key: str, ok, expected: str):
    return lambda values: next((f"{key!r} entry {v!r} must be {expected}." for v in values if not ok(v)), None)


def _windows(values):
    for w in values:
        if not (isinstance(w, list) and len(w) == 2 and all(_is_int(x) for x in w) and 0 <= w[0] < w[1]):
            return f"'layer_windows' entry {w!r} must be [start, stop] with 0 <= start < stop."
    return None


def _steps(steps):
    if not all(_is_int(k) and k >= 1 for k in steps) or steps != sorted(set(steps)):
        return (f"key 'relearn_steps' has value {steps!r}; expected increasing positive whole numbers of steps, e.g. "
                "[5, 10, 20] (0, the unlearned model itself, is always evaluated).")
    return None


def _utility_size(v):
    if v is not None and v < 1:
        return (f"key 'utility_size' has value {v!r}; expected a positive whole number of items per utility set, "
                "or null for all of them.")
    return None


def _curve_variants(v):
    if v is not None and (not v or any(x not in ("full", "lora") for x in v)):
        return (f"key 'curve_variants' has value {v!r}; expected a list of 'full' and/or 'lora' (the variants whose "
                "runs get trade-off curve points), or null for every variant.")
    return None


def _curve_utility(v):
    if v is not None and any(x not in UTILITY_SETS for x in v):
        return (f"key 'curve_utility' has value {v!r}; expected a list of utility sets ({', '.join(UTILITY_SETS)}) "
                "or null for the profile's `utility`.")
    return None


def _mia_size(v):
    if v is not None and (isinstance(v, bool) or v < 1):
        return (f"key 'mia_size' has value {v!r}; expected a positive whole number of texts per MIA member set, "
                "or null for all of them.")
    return None


def _reject_size(v):
    if v is not None and (isinstance(v, bool) or v < 1):
        return (f"key 'reject_size' has value {v!r}; expected a positive whole number of questions per target, "
                "or null for corpus_size.")
    return None


def _stop(v):
    if isinstance(v, bool) or (isinstance(v, str) and v != "unseen") or (not isinstance(v, str) and not 0 <= v <= 1):
        return f"key 'selective_stop' has value {v!r}; expected 'unseen' or an MA in [0, 1]."
    return None


def adam_betas(v):
    if len(v) != 2 or not all(isinstance(b, NUMBER) and not isinstance(b, bool) and 0 <= b < 1 for b in v):
        return f"key 'selective_betas' has value {v!r}; expected two numbers in [0, 1)."
    return None


S = Setting
# --- the keys of rwku_nb itself, by section --------------------------------------------------------------------
declare("run", profile=S("custom", str))  # name used in result paths and figure names
declare("model",
        model=S("smollm2-135m-instruct", str),  # alias, local directory or hub id
        device=S("auto", str),             # auto | cpu | cuda
        dtype=S("auto", str),              # auto (cuda: bfloat16, cpu: float32) | float32 | bfloat16 | float16
        # Knowledge injection (rwku_nb.injection): teach the model its targets' forget/neighbor L1-L2 facts first.
        inject=S(None, (str, int, list, type(None))),  # None (real-world knowledge, RWKU's setting) or a target spec
        inject_lr=S(3e-5, (int, float, str), number=float),  # full fine-tuning, AdamW, answer tokens only
        inject_epochs=S(4, int, number=int),
        inject_batch_size=S(8, int, number=int))
declare("run", seed=S(0, int))
declare("data",
        data=S(None, (str, type(None))),   # local RWKU dir or "hub"; None -> env RWKU_DATA
        targets=S("1", (str, int, list)),  # index, name, range "1-5", list, or "all"
        corpus=S("generated", str, choices=("generated", "provided")),  # zero-shot (by the model itself) | positive.json
        corpus_size=S(8, int, positive=True),  # samples per training corpus and target (positive, negative, pair, passages); at most 582 generated
        reject_size=S(None, OPTIONAL_INT, check=_reject_size),  # RT's questions per target; None: corpus_size (official 300)
        # folder holding the official generation inputs (all_truncated_outputs.json, idontknow.jsonl from
        # jinzhuoran/RWKU generation/); None: <RWKU data>/generation (hub data needs it set)
        generation_dir=S(None, (str, type(None))),
        corpus_max_new_tokens=S(128, int, positive=True),  # length of each generated forget text
        corpus_batch_size=S(8, int, positive=True))
declare("single",  # Table 1 (notebook 02): every target x method x variant
        methods=S(["before", "icu", "repe", "ga_passage", "ga", "dpo", "npo", "rt"], list),  # Table 1's thirteen rows
        variants=S(["full", "lora"], list),  # full fine-tuning, LoRA (r 8, alpha 16, q_proj, v_proj), or layers-A-B
        curve=S(False, bool),             # trade-off curves: also evaluate probes and utility after every training epoch
        # the variants whose runs get curve points (None: every one of `variants`; RepE's weights always do)
        curve_variants=S(None, (list, type(None)), check=_curve_variants),
        # the utility sets each curve point measures (None: all of `utility`; Fig. 3 plots Tru, Fac and Flu)
        curve_utility=S(None, (list, type(None)), check=_curve_utility))
declare("training",
        max_length=S(512, int, positive=True),  # training cutoff in tokens (official cutoff_len 512)
        grad_accum=S(1, int, positive=True),
        warmup_steps=S(20, int),          # official scripts: 20 warmup steps, cosine schedule
        lora_r=S(8, int, positive=True),
        lora_alpha=S(16, int, positive=True),
        lora_dropout=S(0.05, NUMBER),
        lora_target_modules=S(["q_proj", "v_proj"], list),  # RWKU's LoRA; Phi-3 fuses them into qkv_proj
        hparams=S({}, dict))              # per method, per variant: lr, epochs, batch_size (each method's own defaults)
declare("evaluation",
        eval_batch_size=S(32, int, positive=True),
        mia_batch_size=S(8, int, positive=True),
        mia_size=S(None, OPTIONAL_INT, check=_mia_size),  # texts per MIA member set (spread evenly); None: all
        max_new_tokens=S(30, int, positive=True),  # official: 30 new tokens for forget/neighbor probes
        stop=S("newline", str, choices=("newline", "official")),  # newline (rwku_nb) | official (parity)
        scorer=S("rwku", str, choices=("rwku", "rouge-score")),  # rwku (pltrdy `rouge` semantics, official) | rouge-score
        # Utility (Table 1's last five columns), measured after single-target unlearning with the MIA.
        utility=S(list(UTILITY_SETS), list, choices=UTILITY_SETS),
        utility_size=S(None, OPTIONAL_INT, check=_utility_size),  # items per set (spread evenly); None: all 500
        utility_batch_size=S(8, int, positive=True))
declare("memorization",
        memorization_size=S(64, int, positive=True))  # texts per kind in notebook 01's EM/NLL comparison (Fig. 1)
# Batch-target unlearning (notebook 03): the first N of `batch_targets` unlearned at once, N in batch_sizes.
declare("batch",
        batch_targets=S("1-50", (str, int, list)),
        batch_sizes=S([10, 20, 30, 40, 50], list,
                      check=_entries("batch_sizes", lambda n: _is_int(n) and n >= 1, "a positive whole number")),
        batch_methods=S(["icu", "repe", "ga", "dpo", "npo", "rt"], list),  # paper Fig. 5's six
        batch_variant=S("full", str, choices=("full", "lora")))  # full (the paper) | lora (where full does not fit)
# Partial-layer training (notebook 04): full fine-tuning of decoder layers [a, b) only, per window.
declare("layers",
        layer_windows=S([[0, 4], [4, 8], [8, 12], [12, 16], [16, 20], [20, 24], [24, 28], [28, 32]], list,
                        check=_windows),
        layer_methods=S(["ga", "dpo", "npo", "rt"], list),
        layer_targets=S(None, (str, int, list, type(None))))  # the targets of the layer runs; None: `targets`
# The seed-0 paper (rwku_nb.selective; notebook 07). Paper defaults (Barbulescu & Triantafillou 2024, seed code
# configs): Adam betas (0.9, 0.98), lr 5e-5, batch 8, up to 150 epochs, 200-token sequences. The methods' own keys
# (sga_gamma, tau_switch, ...) are declared in rwku_nb/methods/selective.py.
declare("selective",
        selective_methods=S(["ga_seq", "ta", "sga", "tau"], list, choices=("ga_seq", "ta", "sga", "tau")),
        selective_variants=S(["full"], list, choices=("full", "lora")),
        selective_data=S("extraction", str, choices=("extraction", "rwku")),  # Pile subsets (GPT-Neo) | the model's most memorized texts
        selective_file=S("lm_extraction_32_0.csv", str),  # extraction: which subset (N sequences, seed)
        selective_unseen=S("wikitext", str),  # threshold text: wikitext | lambada (extraction); heldout | counterfactual (rwku)
        selective_size=S(None, OPTIONAL_INT, number=int),  # forget sequences (rwku: top by MA; extraction: first N); None = all
        selective_length=S(200, int, number=int),  # tokens per sequence (the extraction benchmark's 200)
        selective_stop=S("unseen", (str, int, float), check=_stop),  # stop when mean MA < this: "unseen" (threshold) or a number
        selective_lr=S(5e-5, (int, float, str), number=float),
        selective_epochs=S(150, int, number=int),  # the cap; the stopping rule usually ends runs far earlier
        selective_batch_size=S(8, int, number=int),
        el_n=S(10, int, number=int),      # EL_10, the seed paper's main n
        el_stride=S(1, int, number=int),  # evaluate EL at every stride-th prefix length (1 = exact; CPU profiles coarser)
        ppl_size=S(None, OPTIONAL_INT, number=int),  # validation texts of valid_wikitext / valid_lambada; None = all
        ppl_max_length=S(512, int, number=int))
# Is the knowledge really gone? (rwku_nb.robustness; notebook 08) Each of `robust_methods` x `robust_variants`
# unlearns every target as in Table 1, then is attacked: relearning (fine-tuning the unlearned model for each of
# `relearn_steps` full-batch steps on `relearn_size` texts of each source: `forget`, the start of the target's
# forget corpus, `passage`, of its Wikipedia passages, and `wikitext`, generic text unrelated to the target;
# constant lr, AdamW) and weight quantization (round-to-nearest, per-group; `quant_bits`). Probes and one utility
# set after each.
declare("robustness",
        robust_methods=S(["ga", "npo", "simnpo", "rmu"], list),
        robust_variants=S(["full"], list, choices=("full", "lora")),
        robust_targets=S(None, (str, int, list, type(None))),  # the targets attacked; None: `targets`
        relearn_steps=S([5, 10, 20], list, check=_steps),
        relearn_sources=S(["forget", "wikitext"], list, choices=("forget", "passage", "wikitext")),
        relearn_size=S(8, int, positive=True),
        relearn_lr=S(1e-5, (int, float, str), number=float),
        quant_bits=S([8, 4], list, check=_entries("quant_bits", lambda b: _is_int(b) and 2 <= b <= 8,
                                                  "a whole number of bits from 2 to 8")),
        quant_group_size=S(128, int, positive=True),
        robust_utility=S("mmlu", str, choices=UTILITY_SETS))
