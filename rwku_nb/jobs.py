"""What a stored number is: each job's identity, a stable hash of every setting that can change its results.

A job is one unlearning run (a method and variant on one target, or on several at once in the
batch-target setting) and its evaluation. Its identity holds the resolved model (with the injection key),
the data it reads (a digest of the targets' files, not their path), the method and the profile keys it
declares (`register(..., args=...)`), the variant's hyperparameters and training settings, the corpus
settings, the evaluation settings that change outputs, the seed and `METRIC_VERSION`. Batch sizes of the
evaluation, progress bars and paths are not part of it: they cannot change a number.

Result files are named `target_NNN-<hash>.json`, so a rerun with any changed setting computes a new result
beside the old one and tables read only the files of the run that asks for them (`rwku_nb.store` lists
and prunes the rest).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from .config import hparams_for, layer_window
from .evaluation import identity_metrics
from .methods import METHODS
from .models import fingerprint, resolve_device, resolve_dtype

# Bump when a change to the metric or evaluation code changes stored numbers: every result is then recomputed.
METRIC_VERSION = 1
SINGLE = "single"
ROBUST = "robust"  # rwku_nb.robustness: an unlearning run, then relearning and quantization attacks
# The profile keys that shape a robustness job's attacks (its identity).
ROBUST_KEYS = ("relearn_steps", "relearn_sources", "relearn_size", "relearn_lr", "quant_bits", "quant_group_size",
               "robust_utility")


def digest(obj, length: int = 12) -> str:
    """A stable short hash of a JSON-serializable object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# Environment variables that choose the CPU's numeric kernels (AVX-512 kernels round differently from AVX2
# ones); the Makefile's PINNED sets them for the CI profile so its committed store reproduces on any x86-64.
# The values the CI profile runs with: the AVX2 code paths, present on every x86-64 CPU of this kind
# (tests/test_reproducibility.py checks that they give the same bytes on an emulated AVX2-only CPU).
AVX2_PINS = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
KERNEL_PINS = tuple(AVX2_PINS)


def cpu_kernels() -> dict:
    """The kernel pins in effect (unset ones as None): part of a CPU result's identity, since they change the
    last digits, so an unpinned run never reuses pinned results or the other way round."""
    return {k: os.environ.get(k) for k in KERNEL_PINS}


def model_identity(params: dict, label: str) -> dict:
    """The resolved model: its label (base id plus injection key), the content of a local model directory,
    device type, dtype and CPU kernel pins."""
    device = resolve_device(params["device"])
    out = {"model": label, "device": device.type, "dtype": str(resolve_dtype(params["dtype"], device))}
    weights = fingerprint(params["model"])
    if weights:  # a local directory: its files' content, not its path
        out["weights"] = weights
    if device.type == "cpu":
        out["kernels"] = cpu_kernels()
    return out


def data_identity(targets, utility: list[str] = ()) -> dict:
    """What the targets' data is, by content: a digest per target of its files, and of each utility set."""
    out = {"targets": {str(t.index): t.digest() for t in targets}}
    if utility:
        out["utility"] = {name: digest(targets[0].utility(name)) for name in utility}
    return out


def identity(params: dict, label: str, targets, method: str, variant: str, experiment: str, mia: bool) -> dict:
    """Everything that shapes the results of one job, in readable form (stored in each result file).

    experiment: "single" (Table 1, with curve points if `curve`), "batch" (several targets at once) or
    "robust" (the single-target run, then the attacks of rwku_nb.robustness)."""
    spec = METHODS[method]
    # Utility on every single-target (Table 1, curve points, layer windows) and batch-target result (paper
    # Figs. 3, 5, 7 plot it); a robustness job measures its one `robust_utility` set after each attack.
    used_utility = [params["robust_utility"]] if experiment == ROBUST else list(params["utility"])
    out = {
        "metric_version": METRIC_VERSION,
        **model_identity(params, label),
        "data": data_identity(targets, used_utility),
        "experiment": experiment,
        "targets": [t.index for t in targets],
        "method": method,
        "variant": variant,
        "method_args": {k: params[k] for k in spec.args},
        **({"method_constants": spec.constants} if spec.constants else {}),
        "seed": params["seed"],
        "evaluation": {"scorer": params["scorer"], "stop": params["stop"], "max_new_tokens": params["max_new_tokens"],
                       "mia": mia, "utility": used_utility,
                       "utility_size": params["utility_size"] if used_utility else None},
    }
    if mia and params["mia_size"] is not None:  # a capped member set (absent when all texts are scored)
        out["evaluation"]["mia_size"] = params["mia_size"]
    extra = identity_metrics()
    if extra:  # metrics registered outside the package (built-in ones are covered by METRIC_VERSION)
        out["evaluation"]["metrics"] = extra
    if spec.corpora:
        kinds = list(spec.corpora)
        corpus = {"kinds": kinds, "size": params["corpus_size"]}
        if "wikitext" in kinds:  # generic text of the extraction data, by content
            from .memorization import wikitext

            corpus["wikitext"] = digest(wikitext(params["corpus_size"]))
        if any(k not in ("passage", "wikitext") for k in kinds):
            corpus["source"] = params["corpus"]
            if params["corpus"] == "generated":  # per-batch sampling seeds: the batch size shapes the texts
                corpus.update(max_new_tokens=params["corpus_max_new_tokens"], batch_size=params["corpus_batch_size"])
                from .corpus import generation_digest  # the official generation inputs, by content

                corpus["inputs"] = generation_digest(kinds, targets[0], params["generation_dir"])
        if "reject" in kinds:
            corpus["reject_size"] = params["reject_size"] or params["corpus_size"]
        out["corpus"] = corpus
    if spec.trains:
        out["hparams"] = hparams_for(params, method, variant, len(targets))
        out["training"] = {k: params[k] for k in ("max_length", "grad_accum", "warmup_steps")}
        if variant == "lora":
            out["training"]["lora"] = {k: params[k] for k in ("lora_r", "lora_alpha", "lora_dropout",
                                                               "lora_target_modules")}
    if experiment == ROBUST:
        out["robustness"] = {k: params[k] for k in ROBUST_KEYS}
        if "wikitext" in params["relearn_sources"]:
            from .memorization import wikitext

            out["robustness"]["wikitext"] = digest(wikitext(params["relearn_size"]))
        if "forget" in params["relearn_sources"] and "positive" not in spec.corpora:
            # the attacker's forget slice is a positive corpus written for the attack (rwku_nb.robustness)
            out["robustness"]["forget_corpus"] = {"size": params["corpus_size"], "source": params["corpus"]}
            if params["corpus"] == "generated":
                from .corpus import generation_digest

                out["robustness"]["forget_corpus"].update(
                    max_new_tokens=params["corpus_max_new_tokens"], batch_size=params["corpus_batch_size"],
                    inputs=generation_digest(["positive"], targets[0], params["generation_dir"]))
    if has_curve(params, experiment, variant) and (spec.trains or method == "repe"):
        out["curve"] = {"epochs": True} if spec.trains else {"repe_alphas": list(params["repe_alphas"])}
        out["curve"]["stages"] = ["probes", "utility"]  # what each point measures
        if params["curve_utility"] is not None:  # fewer sets at the points than at the final model
            out["curve"]["utility"] = list(params["curve_utility"])
    return out


def has_curve(params: dict, experiment: str, variant: str) -> bool:
    """Whether a job stores trade-off curve points: a single-target Table 1 run (not a layer window) of a
    profile with `curve`, in one of its `curve_variants` (None: every variant)."""
    wanted = params["curve_variants"]
    return bool(params["curve"] and experiment == SINGLE and not layer_window(variant)
                and (wanted is None or variant in wanted or variant == "none"))


@dataclass(frozen=True)
class Point:
    """Where a stored result belongs, as fields: `kind` ("single": Table 1; "batch": `value` targets unlearned at
    once; "epoch": a curve point after epoch `value`; "alpha": RepE at weight `value`; "robust": the unattacked
    robustness run; "quant": quantized to `value` bits; "relearn": after `value` steps on `source` text). `name`
    is how result files and tidy rows spell it ("single", "batch-2", "epoch-1", "alpha-0.5", "quant-4",
    "relearn-forget-2"); `Point.parse` reads it back: the one place either is done."""

    kind: str
    value: float | int | None = None
    source: str = ""

    @property
    def name(self) -> str:
        if self.kind in (SINGLE, ROBUST):
            return self.kind
        if self.kind == "relearn":
            return f"relearn-{self.source}-{self.value}"
        return f"{self.kind}-{self.value:g}" if self.kind == "alpha" else f"{self.kind}-{self.value}"

    @classmethod
    def parse(cls, name: str) -> Point:
        kind, *rest = name.split("-")
        try:
            if kind in (SINGLE, ROBUST) and not rest:
                return cls(kind)
            if kind == "relearn" and len(rest) == 2:
                return cls(kind, int(rest[1]), rest[0])
            if kind in ("batch", "epoch", "quant") and len(rest) == 1:
                return cls(kind, int(rest[0]))
            if kind == "alpha" and len(rest) == 1:
                return cls(kind, float(rest[0]))
        except ValueError:
            pass
        raise ValueError(f"not a result setting: {name!r}")


@dataclass(frozen=True)
class Job:
    """One unlearning run and its evaluation; `setting` is where its final results go ("single", "batch-N")."""

    targets: tuple
    method: str
    variant: str
    setting: str
    mia: bool
    identity: dict

    @property
    def key(self) -> str:
        return digest(self.identity)

    @property
    def experiment(self) -> str:
        return experiment_of(self.setting)


def experiment_of(setting: str) -> str:
    """The experiment of a job by where its final results go: "single", "robust", or "batch" ("batch-N")."""
    return Point.parse(setting).kind


def make_job(params: dict, label: str, targets, method: str, variant: str, setting: str, mia: bool) -> Job:
    experiment = experiment_of(setting)
    return Job(tuple(targets), method, variant, setting, mia,
               identity(params, label, targets, method, variant, experiment, mia))
