"""The RWKU release's layout and row formats: file stems, hub configs, attack types, and the checks that
every row read by `rwku_nb.data` passes (a bad row raises one RwkuError naming the file, the row, the
field and what was expected)."""
from __future__ import annotations

import re
from typing import Any, Callable

from .errors import RwkuError
from .paths import DATA_ENV

HUB_ID = "jinzhuoran/RWKU"

# The nine level-3 (adversarial-attack) probe types, spelled as in the `type` field of
# forget_level3.json. Cross-lingual rows name their language: "cross lingual (Spanish)", "(French)",
# "(German)", "(Portuguese)"; `aa_type` maps those to "cross lingual".
AA_TYPES: tuple[str, ...] = (
    "prefix injection",
    "affirmative suffix",
    "role play",
    "multiple choice",
    "reverse query",
    "synonym manipulation",
    "context hint",
    "incontext learning",
    "cross lingual",
)

# Forget corpora (files of the release): LLaMA-3-8B-Instruct-written, and Phi-3-written (`_phi`).
CORPUS_KINDS: tuple[str, ...] = (
    "positive", "negative", "pair", "reject",
    "positive_phi", "negative_phi", "pair_phi", "reject_phi",
)

# Utility set name -> file stem.
UTILITY_SETS: dict[str, str] = {
    "mmlu": "retain_mmlu",
    "bbh": "retain_bbh",
    "truthfulqa": "truthful",
    "triviaqa": "triviaqa",
    "fluency": "fluency",
}
# Utility set name -> its name in tables and figure panels (the Table 1 column it feeds in brackets).
UTILITY_LABELS: dict[str, str] = {"mmlu": "MMLU (Gen)", "bbh": "BBH (Rea)", "truthfulqa": "TruthfulQA (Tru)",
                                  "triviaqa": "TriviaQA (Fac)", "fluency": "AlpacaEval fluency (Flu)"}

# File stem -> (hub config, hub split). The stems are the kinds `Target.has` / `Target.rows` /
# `Target.summary` use.
HUB_CONFIGS: dict[str, tuple[str, str]] = {
    "intro": ("forget_target", "test"),
    "forget_level1": ("forget_level1", "test"),
    "forget_level2": ("forget_level2", "test"),
    "forget_level3": ("forget_level3", "test"),
    "neighbor_level1": ("neighbor_level1", "test"),
    "neighbor_level2": ("neighbor_level2", "test"),
    "forget_mia": ("mia_forget", "test"),
    "retain_mia": ("mia_retain", "test"),
    "retain_mmlu": ("utility_general", "test"),
    "retain_bbh": ("utility_reason", "test"),
    "truthful": ("utility_truthfulness", "test"),
    "triviaqa": ("utility_factuality", "test"),
    "fluency": ("utility_fluency", "test"),
    "passage": ("train_original_passage", "train"),
    "positive": ("train_positive_llama3", "train"),
    "negative": ("train_negative_llama3", "train"),
    "pair": ("train_pair_llama3", "train"),
    "reject": ("train_refusal_llama3", "train"),
    "positive_phi": ("train_positive_phi3", "train"),
    "negative_phi": ("train_negative_phi3", "train"),
    "pair_phi": ("train_pair_phi3", "train"),
    "reject_phi": ("train_refusal_phi3", "train"),
}

# Row kinds of a target, in summary order (intro excluded: it is a string, not rows).
KINDS: tuple[str, ...] = tuple(k for k in HUB_CONFIGS if k != "intro")

ALIASES: dict[str, str] = {
    "mia_forget": "forget_mia",
    "mia_retain": "retain_mia",
    "passages": "passage",
    **{name: stem for name, stem in UTILITY_SETS.items()},
}

UTILITY_STEMS = frozenset(UTILITY_SETS.values())


def aa_type(raw: str) -> str:
    """The AA_TYPES entry of a level-3 row's `type` ("cross lingual (French)" -> "cross lingual")."""
    base = re.sub(r"\s*\(.*\)\s*$", "", raw).strip()
    if base not in AA_TYPES:
        raise RwkuError(f"unknown level-3 attack type {raw!r}; known types: {', '.join(AA_TYPES)}")
    return base



# --------------------------------------------------------------------------------------------
# validation

def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


class _Bad(Exception):
    """Internal: one validation failure inside a row (field, expected, got)."""

    def __init__(self, field: str, expected: str, got: str | None):
        super().__init__(field)
        self.field, self.expected, self.got = field, expected, got


def _need(row: dict, key: str, check: Callable[[Any], bool], expected: str, prefix: str = "") -> Any:
    if key not in row:
        raise _Bad(prefix + key, expected, None)
    value = row[key]
    if not check(value):
        raise _Bad(prefix + key, expected, f"{short(value)} ({type(value).__name__})")
    return value


def _check_probe(level: int, aa: bool) -> Callable[[dict], None]:
    def check(row: dict) -> None:
        _need(row, "query", _is_str, "a string (the probe question)")
        _need(row, "answer", _is_str, "a string (the gold answer)")
        _need(row, "level", lambda v: v == str(level), f"the string '{level}' (the level of this file)")
        if aa:
            _need(row, "type", _is_str, "a string (the attack type, e.g. 'prefix injection')")
        if "neighbor" in row:
            _need(row, "neighbor", _is_str, "a string (the neighbor entity)")
    return check


def _check_text(row: dict) -> None:
    _need(row, "text", _is_str, "a string")


def _check_pair(row: dict) -> None:
    _need(row, "prompt", _is_str, "a string")
    _need(row, "response", lambda v: _is_str_list(v) and len(v) == 2,
          "a list of 2 strings (the two responses of the pair)")


def _check_reject(row: dict) -> None:
    _need(row, "instruction", _is_str, "a string (the question)")
    _need(row, "output", _is_str, "a string (the refusal)")


def _check_mmlu(row: dict) -> None:
    _need(row, "question", _is_str, "a string")
    _need(row, "choices", lambda v: _is_str_list(v) and len(v) == 4, "a list of 4 strings")
    _need(row, "answer", lambda v: is_int(v) and 0 <= v <= 3, "an int in 0..3 (index into choices)")
    _need(row, "task", _is_str, "a string (the MMLU subject, e.g. 'high_school_mathematics')")
    examples = _need(row, "examples", lambda v: isinstance(v, list), "a list of few-shot example objects")
    for j, ex in enumerate(examples):
        where = f"examples[{j}]."
        if not isinstance(ex, dict):
            raise _Bad(f"examples[{j}]", "an object with question/choices/answer", short(ex))
        _need(ex, "question", _is_str, "a string", where)
        _need(ex, "choices", lambda v: _is_str_list(v) and len(v) == 4, "a list of 4 strings", where)
        _need(ex, "answer", lambda v: is_int(v) and 0 <= v <= 3, "an int in 0..3", where)


def _check_bbh(row: dict) -> None:
    for key in ("question", "answer", "cot", "task"):
        _need(row, key, _is_str, "a string")


def _check_truthful(row: dict) -> None:
    _need(row, "question", _is_str, "a string")

    def mc1(v: Any) -> bool:
        return (isinstance(v, dict) and _is_str_list(v.get("choices"))
                and isinstance(v.get("labels"), list) and len(v["labels"]) == len(v["choices"]))
    _need(row, "mc1_targets", mc1, "an object {choices: [str], labels: [0/1]} of equal lengths")


def _check_triviaqa(row: dict) -> None:
    _need(row, "question", _is_str, "a string")
    _need(row, "answers", _is_str_list, "a list of strings (answer aliases)")


def _check_fluency(row: dict) -> None:
    _need(row, "instruction", _is_str, "a string")


def _check_intro(row: dict) -> None:
    _need(row, "target", _is_str, "a string (the target's name)")
    _need(row, "intro", _is_str, "a string (the target's one-line description)")


_CHECKS: dict[str, Callable[[dict], None]] = {
    "intro": _check_intro,
    "forget_level1": _check_probe(1, False),
    "forget_level2": _check_probe(2, False),
    "forget_level3": _check_probe(3, True),
    "neighbor_level1": _check_probe(1, False),
    "neighbor_level2": _check_probe(2, False),
    "forget_mia": _check_text,
    "retain_mia": _check_text,
    "passage": _check_text,
    "positive": _check_text,
    "negative": _check_text,
    "positive_phi": _check_text,
    "negative_phi": _check_text,
    "pair": _check_pair,
    "pair_phi": _check_pair,
    "reject": _check_reject,
    "reject_phi": _check_reject,
    "retain_mmlu": _check_mmlu,
    "retain_bbh": _check_bbh,
    "truthful": _check_truthful,
    "triviaqa": _check_triviaqa,
    "fluency": _check_fluency,
}


def validate(stem: str, rows: list, where: str, fix: str) -> None:
    check = _CHECKS[stem]
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RwkuError(f"{where}: row {i} is {short(row)} ({type(row).__name__}); "
                            f"expected a JSON object. {fix}")
        try:
            check(row)
        except _Bad as bad:
            got = "is missing" if bad.got is None else f"is {bad.got}"
            raise RwkuError(f"{where}: row {i}: field '{bad.field}' {got}; expected {bad.expected}. "
                            f"{fix}") from None


def stem_of(kind: str) -> str:
    stem = ALIASES.get(kind, kind)
    if stem not in KINDS:
        raise RwkuError(f"unknown data kind {kind!r}; expected one of {', '.join(KINDS)} "
                        f"(or an alias: {', '.join(ALIASES)})")
    return stem


def level_of(level: int, allowed: tuple[int, ...], what: str) -> int:
    if isinstance(level, str) and level.strip().isdigit():
        level = int(level)
    if not is_int(level) or level not in allowed:
        raise RwkuError(f"{what} level must be one of {', '.join(map(str, allowed))}; got {level!r}")
    return level


# --------------------------------------------------------------------------------------------
# the hub

def hub_where(stem: str) -> str:
    """The hub config and split a file stem is read from, for messages."""
    config, split = HUB_CONFIGS[stem]
    return f"{HUB_ID} config '{config}' (split '{split}')"


def hub_rows(stem: str) -> list[dict]:
    """All rows of the hub config of `stem` (through `datasets.load_dataset`)."""
    config, split = HUB_CONFIGS[stem]
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise RwkuError(f"reading {HUB_ID} needs the `datasets` package (pip install datasets) "
                        "or a local copy of the data.") from e
    try:
        ds = datasets.load_dataset(HUB_ID, config, split=split)
    except Exception as e:
        raise RwkuError(f"could not load {hub_where(stem)}: {type(e).__name__}: {e}. Check the "
                        f"network / Hugging Face cache, or use a local copy ({DATA_ENV}=<dir "
                        "holding Target/>).") from e
    return ds.to_list() if hasattr(ds, "to_list") else [dict(r) for r in ds]


def hub_grouped(stem: str, rows: list) -> dict[str | None, list[dict]]:
    """Rows of a hub config grouped by `subject` (`target` for the intros); key None: rows without
    subject, shared by all targets (the utility sets)."""
    key = "target" if stem == "intro" else "subject"
    groups: dict[str | None, list[dict]] = {}
    shared = stem in UTILITY_STEMS and rows and all(key not in r for r in rows)
    for i, row in enumerate(rows):
        if shared:
            groups.setdefault(None, []).append(row)
            continue
        name = row.get(key) if isinstance(row, dict) else None
        if not isinstance(name, str):
            got = "is missing" if name is None else f"is {short(name)}"
            raise RwkuError(f"{hub_where(stem)}: row {i}: field '{key}' {got}; expected a "
                            "string (the target's name).")
        if stem in UTILITY_STEMS:
            # the hub adds `subject` to the shared utility rows; drop it so rows match RWKU.zip
            row = {k: v for k, v in row.items() if k != "subject"}
        groups.setdefault(name, []).append(row)
    return groups
