"""The one job lifecycle every experiment uses (single-target, batch-target, partial-layer, trade-off curves,
robustness): restore the original weights, build the corpora, prepare the variant, run the method, evaluate,
store; a diverged run is recorded, an out-of-memory error retried with smaller batches.
"""
from __future__ import annotations

import copy
import random
import weakref
from contextlib import contextmanager

import numpy as np
import torch

from . import distributed, injection, models, results, variants
from .config import layer_window
from .corpus import generate_corpus, provided_corpus
from .errors import RwkuError
from .evaluation import as_curve_point, curve_point_params, evaluate_target
from .jobs import Job, Point, has_curve
from .memorization import wikitext
from .methods import METHODS, Context
from .progress import tqdm
from .training import Diverged


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def training_corpus(model, tokenizer, target, kind: str, params: dict, label: str) -> list:
    """One training corpus of a target (at most `corpus_size` samples, `reject_size` for reject): its Wikipedia
    passages, generic WikiText (`wikitext`), or positive/negative/pair/reject samples generated zero-shot by the
    model named `label` from the official generation inputs (`generation_dir`; call before unlearning) or read
    from the provided files."""
    if kind == "passage":
        texts = [r["text"] for r in target.passages]
        if not texts:
            raise RwkuError(f"Target {target.index} ({target.name}) has no passage.json: GA* (ga_passage) needs "
                            "its Wikipedia passages. Drop ga_passage from the methods or pick a target that has them.")
        return texts[: params["corpus_size"]]  # the official GA* uses them all; corpus_size caps CPU runs
    if kind == "wikitext":  # generic text (RMU's retain text): the first corpus_size WikiText texts
        return wikitext(params["corpus_size"])
    size = (params["reject_size"] or params["corpus_size"]) if kind == "reject" else params["corpus_size"]
    if params["corpus"] == "provided":
        return provided_corpus(target, kind, size)
    return generate_corpus(model, tokenizer, target, label, kind, size, params["corpus_max_new_tokens"],
                           params["corpus_batch_size"], params["seed"], params["generation_dir"])


def run_job(model, tokenizer, original, job: Job, params: dict, label: str, once=None) -> None:
    """Unlearn the job's targets (one, or several at once) with its method from the original weights,
    evaluate each target, store one result per target; with `curve`, also the per-epoch / per-alpha points.

    Faults: a NaN or infinite training loss stores a 'diverged' result (metric `diverged`, n = the step)
    and returns, so the sweep goes on; a device out-of-memory error restarts the job from the original
    weights with every batch halved (gradient accumulation doubled, so the effective training batch
    stays), down to batch size 1.
    """
    while True:
        try:
            return (once or _run_job_once)(model, tokenizer, original, job, params, label)
        except Diverged as e:
            for t in job.targets:
                _save(params, label, job, job.setting, t, [{"metric": "diverged", "value": 1.0, "n": e.step}],
                      [], {"diverged": {"step": e.step, "loss": e.loss}}, [])
            tqdm.write(f"{job.method} {job.variant} diverged at step {e.step}; recorded, going on.")
            return
        except Exception as e:
            # A sharded run cannot retry on one process alone (the others would wait in a collective):
            # the error ends the launch, which stops every process.
            if not models.is_out_of_memory(e) or distributed.sharded():
                raise
            models.free_memory()
            smaller = _halved(params, job.method)
            if smaller is None:
                raise RwkuError(f"{job.method} {job.variant}: out of device memory even with every batch at 1. Use LoRA, "
                                "a smaller max_length, or a device with more memory.") from e
            tqdm.write(f"{job.method} {job.variant}: out of memory; retrying with batches halved.")
            params = smaller


def _halved(params: dict, method: str) -> dict | None:
    """`params` with evaluation and `method`'s training batches halved (accumulation doubled), or None
    when every batch is already 1."""
    p = copy.deepcopy(params)
    changed = False
    for key in ("eval_batch_size", "mia_batch_size", "utility_batch_size"):
        if p[key] > 1:
            p[key], changed = p[key] // 2, True
    per = p["hparams"].get(method, {})
    if any(v["batch_size"] > 1 for v in per.values()):
        for v in per.values():
            v["batch_size"] = max(1, v["batch_size"] // 2)
        p["grad_accum"] *= 2
        changed = True
    return p if changed else None


_MEMO: tuple = (None, {})  # (weak reference to the original weights, values computed on them)


def shared_memo(original) -> dict | None:
    """The values computed on `original` (a `variants.Snapshot`): one dict for as long as those weights live,
    so the jobs of a sweep share them (methods.Context.on_original); None for weights that cannot be tracked."""
    global _MEMO
    ref, values = _MEMO
    if ref is None or ref() is not original:
        try:
            _MEMO = (weakref.ref(original), {})
        except TypeError:  # a plain dict of tensors
            return None
    return _MEMO[1]


class Run:
    """One unlearning run in progress: the model the method changed (LoRA-wrapped, partially frozen or the
    model itself), the training corpora per target, the method's `Context` and what it returned."""

    def __init__(self, model, corpora: list[dict], extra):
        self.model, self.corpora, self.extra = model, corpora, extra  # extra: what before_training returned
        self.ctx, self.how, self.merged = None, {}, False


@contextmanager
def unlearned(model, tokenizer, original, job: Job, params: dict, label: str, on_epoch_end=None,
              before_training=None):
    """The one lifecycle of a job: restore the original weights, seed, build the corpora (then
    `before_training(corpora)`, e.g. a corpus an attack needs), seed again, prepare the variant (full, LoRA,
    layer window), run the method, and yield the `Run` to evaluate; on leaving, however it is left, the
    method's hooks are detached, LoRA removed and the original weights restored.
    `on_epoch_end(run, epoch)`: the trade-off curve hook, called with the run in training."""
    spec = METHODS[job.method]
    variants.restore_weights(model, original)
    seed_everything(params["seed"])
    corpora = [{kind: training_corpus(model, tokenizer, t, kind, params, label) for kind in spec.corpora}
               for t in job.targets]
    extra = before_training(corpora) if before_training else None
    seed_everything(params["seed"])
    run = Run(prepare_variant(model, job.variant, params) if spec.trains else model, corpora, extra)
    hook = (lambda epoch: on_epoch_end(run, epoch)) if on_epoch_end else None
    run.ctx = Context(run.model, tokenizer, list(job.targets), corpora, params, job.variant, hook,
                      memo=shared_memo(original))
    try:
        run.how = spec.run(run.ctx)
        run.model.eval()
        yield run
    finally:
        if "detach" in run.how:
            run.how["detach"]()
        if run.model is not model and not run.merged:
            variants.remove_lora(run.model)
        variants.restore_weights(model, original)


def _run_job_once(model, tokenizer, original, job: Job, params: dict, label: str) -> None:
    """A single-target, batch-target or partial-layer job: unlearn, evaluate every target, store (with the
    per-epoch / per-alpha trade-off points of a single-target run that asks for `curve`)."""
    targets, mia, setting = list(job.targets), job.mia, job.setting
    curve = has_curve(params, setting, job.variant)  # Table 1 runs only

    utility = bool(job.identity["evaluation"]["utility"])

    def evaluate_all(m, how: dict, final: bool, memo: dict | None = None) -> dict:
        # MIA on the final model of a run that asks for it; probes and utility on it and on every curve point.
        # The targets of a batch-target run share one model: a utility set is scored once for all (`memo`, fresh
        # unless given). A curve point measures the profile's `curve_utility` sets (default: all of them).
        memo = {} if memo is None else memo
        at = params if final else curve_point_params(params)
        return {t.index: evaluate_target(m, tokenizer, t, at, icu=how.get("icu", False), mia=final and mia,
                                         utility=utility, memo=memo)
                for t in targets}

    def store(run: Run, at_setting: str, evaluated: dict, info: dict) -> None:
        for t in targets:
            _save(params, label, job, at_setting, t, *evaluated[t.index], info, run.corpora)

    def on_epoch_end(run: Run, epoch: int) -> None:
        store(run, Point("epoch", epoch).name, evaluate_all(run.model, {}, False), {"epoch": epoch})

    with unlearned(model, tokenizer, original, job, params, label, on_epoch_end if curve else None) as run:
        # A model that computes its original weights' function (a method that neither trains nor attaches hooks:
        # Before, ICU) shares the memo of those weights with every such job of the sweep: Before's utility, the
        # same items on the same model for each target, is scored once, not once per target. What the method
        # returned decides (RepE attaches hooks; its curve points and every epoch point get a fresh memo).
        as_original = not METHODS[job.method].trains and "detach" not in run.how
        evaluated = evaluate_all(run.model, run.how, True, shared_memo(original) if as_original else None)
        if curve and "vector" in run.how:
            _steering_curve(run, params, store, evaluate_all, evaluated)
    store(run, setting, evaluated, run.ctx.info)


def _steering_curve(run: Run, params: dict, store, evaluate_all, final: dict) -> None:
    """RepE trade-off points: the same control vector added at each weight of `repe_alphas`; the point at the
    Table 1 weight (`repe_alpha`) is the final evaluation `final` as a curve point holds it, not evaluated again."""
    from .methods import repe

    how = run.how
    how["detach"]()  # the Table 1 weight's hook; each point attaches its own
    for alpha in params["repe_alphas"]:
        if alpha == params["repe_alpha"]:
            same = {t: (as_curve_point(rows, params), preds) for t, (rows, preds) in final.items()}
            store(run, Point("alpha", alpha).name, same, {"alpha": alpha})
            continue
        handle = repe.attach(run.model, how["vector"], how["layer"], alpha)
        try:
            evaluated = evaluate_all(run.model, {}, False)
        finally:
            handle.remove()
        store(run, Point("alpha", alpha).name, evaluated, {"alpha": alpha})


def prepare_variant(model, variant: str, params: dict):
    """The model a trained method changes: LoRA-wrapped, partially frozen ('layers-A-B') or all trainable."""
    if variant == "lora":
        return variants.add_lora(model, params["lora_r"], params["lora_alpha"], params["lora_dropout"],
                               tuple(params["lora_target_modules"]))
    for p in model.parameters():
        p.requires_grad_(True)
    window = layer_window(variant)
    if window:
        variants.trainable_layers(model, *window)
    return model


def _save(params, label, job: Job, setting, target, rows, preds, info, corpora) -> None:
    meta = {"model": label, "base_model": params["model"], "knowledge": injection.knowledge(params),
            "setting": setting, "method": job.method, "variant": job.variant,
            "target_index": target.index, "target": target.name, "profile": params["profile"],
            "corpus_sizes": {kind: sum(len(c[kind]) for c in corpora) for kind in (corpora[0] if corpora else {})},
            "diverged": "diverged" in info, "key": job.key}
    keys = ("model", "setting", "method", "variant", "target_index", "target")
    tidy = [{**{k: meta[k] for k in keys}, **r} for r in rows]
    if distributed.writes():
        results.save_result(results.result_path(params["profile"], label, job, target.index, setting),
                            job.identity, meta, tidy, preds, info)
