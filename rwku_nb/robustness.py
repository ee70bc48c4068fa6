"""Is the knowledge really gone? Attacks on the weights of an unlearned model (notebook 08).

Each robustness job unlearns one target exactly as its Table 1 run does (same corpus, seeds and
hyperparameters, so its unattacked point equals Table 1's), then evaluates the forget/neighbor probes and one
utility set (`robust_utility`) of the unlearned model and of each attacked copy of it:

- **Relearning** (e.g. Hu et al., "Jogging the memory of unlearned LLMs", ICLR 2025; Unlearn-Smooth, ICML
  2025): fine-tune every weight of the unlearned model on `relearn_size` texts of each source in
  `relearn_sources` for each of `relearn_steps` optimizer steps (one full-batch step per epoch of rwku_nb's
  training loop, constant lr `relearn_lr`, AdamW): `forget`, the start of the target's own forget corpus
  (the attacker holds a little of what was removed), `passage`, the start of the target's Wikipedia
  passages (what an attacker of a model unlearned elsewhere can hold; `python -m rwku_nb.evaluate --attacks`),
  and `wikitext`, generic text unrelated to the target (does benign fine-tuning alone bring it back?).
- **Quantization** (Zhang et al., ICLR 2025, "Catastrophic failure of LLM unlearning via quantization"):
  round-to-nearest weight quantization of the decoder layers to each of `quant_bits` (rwku_nb.quantize;
  per-group scales, `quant_group_size`), evaluated in the dequantized weights.

Every attack starts from the unlearned weights, and the job ends with the original weights restored, so
nothing leaks into the next job. A LoRA run is attacked after its adapters are merged into the weights.
Points are stored as settings "relearn-<source>-<k>" and "quant-<bits>" beside the job's own "robust".
"""
from __future__ import annotations

import pandas as pd

from . import injection, results, variants
from .data import RWKU
from .errors import RwkuError
from .evaluation import UTILITY_COLUMNS
from .jobs import ROBUST, Job, Point, make_job
from .memorization import wikitext
from .quantize import quantize_model_
from .training import sft_loss, text_examples, train

RELEARN, QUANT = "relearn", "quant"


def robust_jobs(params: dict) -> list[Job]:
    """Every target x (method, variant) of `robust_methods` x `robust_variants`."""
    from .runner import jobs

    label = injection.model_label(params)
    return [make_job(params, label, [t], m, v, ROBUST, False) for t in RWKU(params["data"]).select(attacked(params))
            for m, v in jobs(params["robust_methods"], params["robust_variants"])]


def attacked(params: dict):
    """The targets the robustness jobs unlearn and attack: `robust_targets`, or the profile's targets."""
    return params["targets"] if params["robust_targets"] is None else params["robust_targets"]


def before_rows(params: dict | str) -> pd.DataFrame:
    """The Before rows of Table 1 (notebook 02's single-target sweep, resumed) of the attacked targets."""
    from .runner import as_params, run_sweep

    params = as_params(params)
    return run_sweep({**params, "methods": ["before"], "targets": attacked(params)})


def run_robustness(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Run (or resume) a profile's robustness jobs; returns their tidy rows (setting = attack point)."""
    from . import distributed
    from .runner import _run_jobs, as_params

    params = as_params(params)
    planned = robust_jobs(params)
    _run_jobs(params, model_and_tokenizer, distributed.jobs(planned), "robustness", run_robust_job)
    return results.load_rows(params["profile"], injection.model_label(params), planned)


def relearn_texts(source: str, target, forget, n: int) -> list[str]:
    """The attacker's texts: the first `n` of the target's forget corpus (`forget()` gives it), of its Wikipedia
    passages, or of generic WikiText."""
    if source == "forget":
        return forget()[:n]
    if source == "passage":
        if not target.passages:
            raise RwkuError(f"Target {target.index} ({target.name}) has no passage.json: relearn source 'passage' "
                            "needs its Wikipedia passages. Drop it from relearn_sources or pick a target that has them.")
        return [r["text"] for r in target.passages][:n]
    return wikitext(n)


def run_robust_job(model, tokenizer, original, job: Job, params: dict, label: str) -> None:
    """Unlearn (the one job lifecycle, `lifecycle.unlearned`), evaluate, attack, evaluate each attacked copy."""
    from .evaluation import evaluate_target
    from .lifecycle import _save, training_corpus, unlearned

    [target] = job.targets
    p = {**params, "utility": [params["robust_utility"]]}

    def attacker_corpus(corpora) -> list[str]:
        # the attacker's forget slice, where the method trains on no positive corpus: one written before unlearning
        if "positive" in corpora[0] or "forget" not in params["relearn_sources"]:
            return []
        return training_corpus(model, tokenizer, target, "positive", params, label)

    def forget() -> list[str]:
        return run.corpora[0]["positive"] if "positive" in run.corpora[0] else run.extra

    def evaluate(m) -> tuple:
        return evaluate_target(m, tokenizer, target, p, mia=False, utility=True)

    def store(setting: str, evaluated: tuple, info: dict) -> None:
        _save(p, label, job, setting, target, *evaluated, info, run.corpora)

    with unlearned(model, tokenizer, original, job, params, label, before_training=attacker_corpus) as run:
        if job.variant == "lora":  # the attacks act on the weights: merge the adapters into them
            flags = getattr(run.model, "_rwku_requires_grad", {})
            run.model, run.merged = run.model.merge_and_unload(), True
            for n, q in run.model.named_parameters():
                q.requires_grad_(flags.get(n, True))
        m = run.model
        m.eval()
        unattacked = evaluate(m)
        unlearned_weights = variants.snapshot_weights(m)
        for bits in params["quant_bits"]:
            quantize_model_(m, bits, params["quant_group_size"])
            store(Point(QUANT, bits).name, evaluate(m), {"attack": QUANT, "bits": bits,
                                                   "group_size": params["quant_group_size"]})
            variants.restore_weights(m, unlearned_weights)
        for source in params["relearn_sources"]:
            _relearn(m, tokenizer, source, relearn_texts(source, target, forget, params["relearn_size"]),
                     params, lambda k, s=source: store(Point(RELEARN, k, s).name, evaluate(m),
                                                       {"attack": RELEARN, "source": s, "steps": k}))
            variants.restore_weights(m, unlearned_weights)
    store(ROBUST, unattacked, {**run.ctx.info, "attack": "none"})


def _relearn(model, tokenizer, source: str, texts: list[str], params: dict, at_step) -> None:
    """Fine-tune every weight on `texts`, one full-batch step per epoch, calling `at_step(k)` after each k of
    `relearn_steps` (training stops at the last)."""
    steps = params["relearn_steps"]
    for q in model.parameters():
        q.requires_grad_(True)
    examples = text_examples(tokenizer, texts, params["max_length"])

    def on_epoch_end(epoch):
        if epoch in steps:
            at_step(epoch)

    train(model, tokenizer, examples, sft_loss, params["relearn_lr"], steps[-1], len(examples), 1, 0,
          params["seed"], desc=f"relearn on {source}", on_epoch_end=on_epoch_end, schedule="constant")
    model.eval()
    at_step(steps[-1])


def attack_of(setting: str) -> tuple[str, str, int]:
    """(attack, source, amount) of a stored setting: ("none", "", 0), ("relearn", "forget", 5), ("quant", "", 4)."""
    point = Point.parse(setting)
    return ("none", "", 0) if point.kind == ROBUST else (point.kind, point.source, point.value)


SOURCE_LABELS = {"forget": "Relearn on forget text", "passage": "Relearn on Wikipedia passages",
                 "wikitext": "Relearn on WikiText"}
UTILITY_LABELS = {metric.removeprefix("utility_"): column for metric, (_, column) in UTILITY_COLUMNS.items()}


def points(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (Method, attack, source, amount): the mean over targets of forget All, neighbor All and
    the utility score (the unattacked point has attack 'none', amount 0)."""
    from .tables import method_label

    if rows.empty:
        return pd.DataFrame(columns=["Method", "attack", "source", "amount", "metric", "value"])
    df = rows[rows["metric"].isin(["forget_all", "neighbor_all"]) | rows["metric"].str.startswith("utility_")]
    attack = pd.DataFrame([attack_of(s) for s in df["setting"]], columns=["attack", "source", "amount"],
                          index=df.index)
    df = pd.concat([df, attack], axis=1).assign(Method=[method_label(m, v) for m, v in zip(df["method"], df["variant"])])
    return df.groupby(["Method", "attack", "source", "amount", "metric"], sort=False)["value"].mean().reset_index()


def robustness_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: forget All of the unlearned model beside its neighbor All and utility score, then forget
    All after each relearning point and each quantization (mean over targets)."""
    p = points(rows)
    if p.empty:
        return pd.DataFrame()
    out = {}
    none = p[p["attack"] == "none"].pivot_table(index="Method", columns="metric", values="value", sort=False)
    out[("Unlearned", "Forget All")] = none["forget_all"]
    out[("Unlearned", "Neighbor All")] = none["neighbor_all"]
    for metric in (c for c in none.columns if c.startswith("utility_")):
        out[("Unlearned", UTILITY_LABELS.get(metric.removeprefix("utility_"), metric))] = none[metric]
    forget = p[p["metric"] == "forget_all"]
    for source in dict.fromkeys(forget.loc[forget["attack"] == RELEARN, "source"]):
        part = forget[(forget["attack"] == RELEARN) & (forget["source"] == source)]
        for k in sorted(part["amount"].unique()):
            out[(SOURCE_LABELS.get(source, source), f"{k} steps")] = part[part["amount"] == k].set_index("Method")["value"]
    quant = forget[forget["attack"] == QUANT]
    for bits in sorted(quant["amount"].unique(), reverse=True):
        out[("Quantized", f"{bits}-bit")] = quant[quant["amount"] == bits].set_index("Method")["value"]
    from .tables import _row_order

    table = pd.DataFrame(out).reindex(_row_order(none.index))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "Method"
    return table


def recovered(table: pd.DataFrame, before_forget_all: float) -> pd.DataFrame:
    """How much of the forgotten score each attack brings back, in percent: 100 x (attacked - unlearned) /
    (before - unlearned); 0 = nothing returns, 100 = back to the model before unlearning."""
    attacked = table.drop(columns="Unlearned", level=0)
    unlearned = table[("Unlearned", "Forget All")]
    gone = before_forget_all - unlearned
    return attacked.sub(unlearned, axis=0).div(gone.where(gone > 0), axis=0) * 100
