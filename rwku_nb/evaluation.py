"""The metric registry and the one evaluation of a model on a target.

Every metric is registered here once, with the stage that computes it (`probes`: on every evaluated model,
curve and attack points too; `mia`: membership inference on a final model that asks for it; `utility`: the
profile's utility sets on such a model in the single-target setting), the metric rows a complete result must
hold and the Table 1 columns it fills. Three things derive from the registry: `evaluate_target` (what is
computed), `missing_metrics` (whether a stored result is complete: `results.is_finished`) and
`table1_columns` (the columns of Table 1 and its views). A metric registered from outside the package is
also part of its jobs' identity (`identity_metrics`), so results computed without it are never reused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import utility as utility_metrics
from .errors import RwkuError
from .evaluate import LEVEL_NAMES, evaluate_mia, evaluate_probes, summarize_probes
from .prompts import icu_subject

STAGES = ("probes", "mia", "utility")


@dataclass
class Evaluation:
    """What a metric may read: the model under evaluation, its target, the profile, whether the ICU prompt is
    on, and the per-probe predictions of this evaluation (the `probes` stage fills them first)."""

    model: object
    tokenizer: object
    target: object
    params: dict
    icu: bool | str = False  # ICU's instruction: True names the target; a string names targets unlearned at once
    predictions: list = field(default_factory=list)


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: `compute(Evaluation) -> [{"metric", "value", "n"}]`; `columns` maps the metric rows
    it reports in Table 1 to their (group, column); `required(identity)` names the rows every complete result of
    a job with that identity holds (default: its columns' rows); `version` is part of its jobs' identity."""

    name: str
    stage: str
    compute: Callable[[Evaluation], list[dict]]
    columns: dict = field(default_factory=dict)
    required: Callable[[dict], tuple] | None = None
    version: int = 1
    builtin: bool = False


METRICS: dict[str, MetricSpec] = {}


def register_metric(name: str, stage: str, columns: dict | None = None, required=None, version: int = 1,
                    builtin: bool = False):
    """Decorator adding a metric's `compute` function to the registry (after those registered before it, which
    is also its columns' place in Table 1)."""
    if stage not in STAGES:
        raise RwkuError(f"metric {name!r}: stage {stage!r}; expected one of {', '.join(STAGES)}.")

    def wrap(fn):
        METRICS[name] = MetricSpec(name, stage, fn, dict(columns or {}), required, version, builtin)
        return fn

    return wrap


def evaluate_target(model, tokenizer, target, params: dict, icu: bool | str = False,
                    mia: bool = True, utility: bool = False) -> tuple[list[dict], list[dict]]:
    """(metric rows, per-probe predictions) of one target: every registered metric of the stages asked for
    (`probes` always; `mia`; `utility`: the profile's utility sets, each capped at `utility_size` items)."""
    stages = {"probes", *(["mia"] if mia else []), *(["utility"] if utility else [])}
    ev = Evaluation(model, tokenizer, target, params, icu)
    rows: list[dict] = []
    for stage in STAGES:  # the probes' predictions first: later metrics may read them
        if stage in stages:
            for spec in METRICS.values():
                if spec.stage == stage:
                    rows += spec.compute(ev)
    return rows, ev.predictions


def missing_metrics(identity: dict, rows: list[dict]) -> list[str]:
    """The metric rows a complete final result of a job with `identity` must hold but `rows` lacks."""
    have = {r["metric"] for r in rows}
    return [m for spec in METRICS.values() for m in _required(spec, identity) if m not in have]


def _required(spec: MetricSpec, identity: dict) -> tuple:
    evaluation = identity.get("evaluation", {})
    if spec.stage == "mia" and not evaluation.get("mia"):
        return ()
    if spec.stage == "utility" and not evaluation.get("utility"):
        return ()
    return tuple(spec.required(identity) if spec.required else spec.columns)


def table1_columns() -> dict:
    """(group, column) -> metric row of every registered metric's Table 1 columns, in registration order."""
    return {col: metric for spec in METRICS.values() for metric, col in spec.columns.items()}


def identity_metrics() -> dict:
    """Metrics registered outside the package and their versions: part of every job's identity (the built-in
    ones are covered by jobs.METRIC_VERSION)."""
    return {name: spec.version for name, spec in METRICS.items() if not spec.builtin}


# --- the built-in metrics: RWKU's Table 1 -------------------------------------------------------------------

PROBE_METRICS = {f"{split}_{name}": (split.capitalize(), label)
                 for split, levels in (("forget", (1, 2, 3)), ("neighbor", (1, 2)))
                 for name, label in [*((LEVEL_NAMES[lv].lower(), LEVEL_NAMES[lv]) for lv in levels), ("all", "All")]}
UTILITY_COLUMNS = {"utility_mmlu": ("Utility", "Gen"), "utility_bbh": ("Utility", "Rea"),
                   "utility_truthfulqa": ("Utility", "Tru"), "utility_triviaqa": ("Utility", "Fac"),
                   "utility_fluency": ("Utility", "Flu")}


@register_metric("probes", "probes", PROBE_METRICS, builtin=True)
def _probes(ev: Evaluation) -> list[dict]:
    """Forget FB/QA/AA/All and neighbor FB/QA/All: mean ROUGE-L recall of greedy answers (rwku_nb.evaluate)."""
    p = ev.params
    ev.predictions = evaluate_probes(ev.model, ev.tokenizer, ev.target, icu=ev.icu, batch_size=p["eval_batch_size"],
                                     max_new_tokens=p["max_new_tokens"], stop=p["stop"])
    return summarize_probes(ev.predictions, p["scorer"])


# Which MIA rows exist depends on the target's member sets (a target without FM or RM has none of its rows), so a
# complete result is not required to hold any.
@register_metric("mia", "mia", {"mia_fm_loss": ("MIA", "FM"), "mia_rm_loss": ("MIA", "RM")},
                 required=lambda identity: (), builtin=True)
def _mia(ev: Evaluation) -> list[dict]:
    """LOSS, Zlib, Min-K%++ means on the forget and retain member sets and the FM-vs-RM AUCs (rwku_nb.evaluate)."""
    return evaluate_mia(ev.model, ev.tokenizer, ev.target, icu=ev.icu, batch_size=ev.params["mia_batch_size"])


@register_metric("utility", "utility", UTILITY_COLUMNS, builtin=True,
                 required=lambda identity: tuple(f"utility_{n}" for n in identity["evaluation"]["utility"]))
def _utility(ev: Evaluation) -> list[dict]:
    """The profile's utility sets (rwku_nb.utility), in the order the profile lists them."""
    p = ev.params
    if not p["utility"]:
        return []
    sets = {name: utility_metrics.subset(ev.target.utility(name), p["utility_size"]) for name in p["utility"]}
    return utility_metrics.evaluate_utility(ev.model, ev.tokenizer, sets, icu_subject=icu_subject(ev.icu, ev.target.name),
                                            batch_size=p["utility_batch_size"])
