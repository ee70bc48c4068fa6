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

import json
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
    # utility rows already computed on this very model (the targets of one batch-target point share them)
    memo: dict | None = None


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
MIA_PREFIX = "mia_"  # the metric rows of the mia stage, and no others, start with it


def register_metric(name: str, stage: str, columns: dict | None = None, required=None, version: int = 1,
                    builtin: bool = False):
    """Decorator adding a metric's `compute` function to the registry (after those registered before it, which
    is also its columns' place in Table 1)."""
    if stage not in STAGES:
        raise RwkuError(f"metric {name!r}: stage {stage!r}; expected one of {', '.join(STAGES)}.")
    bad = [row for row in columns or {} if (stage == "mia") != row.startswith(MIA_PREFIX)]
    if bad:  # the rows it returns are checked too, when it runs (evaluate_target)
        raise RwkuError(f"metric {name!r} (stage {stage}) reports rows {bad}: rows of the mia stage, and only they, "
                        f"are named {MIA_PREFIX}*; rename them.")

    def wrap(fn):
        METRICS[name] = MetricSpec(name, stage, fn, dict(columns or {}), required, version, builtin)
        return fn

    return wrap


def evaluate_target(model, tokenizer, target, params: dict, icu: bool | str = False,
                    mia: bool = True, utility: bool = False, memo: dict | None = None) -> tuple[list[dict], list[dict]]:
    """(metric rows, per-probe predictions) of one target: every registered metric of the stages asked for
    (`probes` always; `mia`; `utility`: the profile's utility sets, each capped at `utility_size` items).
    `memo`: a dict shared by the evaluations of one unchanged model (the targets of a batch-target run), so a
    utility set with the same items and instruction is scored once."""
    stages = {"probes", *(["mia"] if mia else []), *(["utility"] if utility else [])}
    ev = Evaluation(model, tokenizer, target, params, icu, memo=memo)
    rows: list[dict] = []
    for stage in STAGES:  # the probes' predictions first: later metrics may read them
        if stage in stages:
            for spec in METRICS.values():
                if spec.stage == stage:
                    got = spec.compute(ev)
                    bad = [r["metric"] for r in got if (stage == "mia") != r["metric"].startswith(MIA_PREFIX)]
                    if bad:
                        raise RwkuError(f"metric {spec.name!r} (stage {stage}) returned rows {bad}: rows of the mia "
                                        f"stage, and only they, are named {MIA_PREFIX}*; rename them.")
                    rows += got
    return rows, ev.predictions


def curve_point_params(params: dict) -> dict:
    """The profile as a trade-off curve point evaluates with: its `curve_utility` sets, if it names them."""
    return params if params["curve_utility"] is None else {**params, "utility": list(params["curve_utility"])}


def as_curve_point(rows: list[dict], params: dict) -> list[dict]:
    """The metric rows of a final evaluation that a curve point of the same model holds: without the mia
    stage's rows and without the utility sets the points do not measure (`curve_utility`)."""
    sets = curve_point_params(params)["utility"]
    return [r for r in rows if not r["metric"].startswith(MIA_PREFIX)
            and not (r["metric"].startswith("utility_") and r["metric"][len("utility_"):] not in sets)]


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
    return evaluate_mia(ev.model, ev.tokenizer, ev.target, icu=ev.icu, batch_size=ev.params["mia_batch_size"],
                        size=ev.params["mia_size"])


@register_metric("utility", "utility", UTILITY_COLUMNS, builtin=True,
                 required=lambda identity: tuple(f"utility_{n}" for n in identity["evaluation"]["utility"]))
def _utility(ev: Evaluation) -> list[dict]:
    """The profile's utility sets (rwku_nb.utility), in the order the profile lists them."""
    p = ev.params
    if not p["utility"]:
        return []
    subject = icu_subject(ev.icu, ev.target.name)
    memo = ev.memo if ev.memo is not None else {}
    out = []
    for name in p["utility"]:
        items = utility_metrics.subset(ev.target.utility(name), p["utility_size"])
        key = ("utility", name, subject, json.dumps(items, sort_keys=True, default=str))
        if key not in memo:
            memo[key] = utility_metrics.evaluate_utility(ev.model, ev.tokenizer, {name: items}, icu_subject=subject,
                                                         batch_size=p["utility_batch_size"])
        out += memo[key]
    return out
