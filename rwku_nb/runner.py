"""The sweeps. Every job starts from the original weights, unlearns, is evaluated, and is stored at once
as one result file per evaluated target; a rerun skips finished jobs.

- `run_sweep`: single-target (Table 1): every target x (method, variant); with `curve`, trained methods
  are also evaluated after every epoch and RepE at every `repe_alphas` weight (trade-off curves).
- `run_batch`: batch-target: the first N of `batch_targets` unlearned together, every one evaluated.
- `run_layers`: partial-layer: `run_sweep` with the variants 'layers-A-B' of `layer_windows`.
- `before_rows`: the Before rows of the model as released and of its knowledge-injected version.
"""
from __future__ import annotations

import copy
import random

import numpy as np
import pandas as pd
import torch

from . import distributed, injection, models, results, variants
from .config import layer_variants, layer_window, load_profile, make_params
from .corpus import generate_corpus, provided_corpus
from .data import RWKU
from .errors import RwkuError
from .evaluation import evaluate_target
from .memorization import knowledge_ranking as rank_targets
from .memorization import memorization_rows, wikitext
from .methods import METHODS, Context
from .progress import tqdm
from .jobs import SINGLE, Job, data_identity, make_job, model_identity
from .training import Diverged


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def jobs(methods: list[str], variants: list[str]) -> list[tuple[str, str]]:
    """(method, variant) pairs; methods that train nothing have the single variant 'none'."""
    out = []
    for method in methods:
        out += [(method, v) for v in variants] if METHODS[method].trains else [(method, "none")]
    return out


def training_corpus(model, tokenizer, target, kind: str, params: dict, label: str) -> list:
    """One training corpus of a target (at most `corpus_size` samples): its Wikipedia passages, generic
    WikiText (`wikitext`), or positive/negative/reject samples generated zero-shot by the model named `label` (call before
    unlearning) or read from the provided files."""
    if kind == "passage":
        texts = [r["text"] for r in target.passages]
        if not texts:
            raise RwkuError(f"Target {target.index} ({target.name}) has no passage.json: GA* (ga_passage) needs "
                            "its Wikipedia passages. Drop ga_passage from the methods or pick a target that has them.")
        return texts[: params["corpus_size"]]  # the official GA* uses them all; corpus_size caps CPU runs
    if kind == "wikitext":  # generic text (RMU's retain text): the first corpus_size WikiText texts
        return wikitext(params["corpus_size"])
    if params["corpus"] == "provided":
        return provided_corpus(target, kind, params["corpus_size"])
    return generate_corpus(model, tokenizer, target, label, kind, params["corpus_size"],
                           params["corpus_max_new_tokens"], params["corpus_batch_size"], params["seed"])


def sweep_jobs(params: dict, mia: bool = True) -> list[Job]:
    """The single-target jobs of a profile: every target x (method, variant)."""
    label = injection.model_label(params)
    return [make_job(params, label, [t], m, v, SINGLE, mia) for t in RWKU(params["data"]).select(params["targets"])
            for m, v in jobs(params["methods"], params["variants"])]


def run_sweep(params: dict | str, model_and_tokenizer=None, mia: bool = True) -> pd.DataFrame:
    """Run (or resume) a profile's single-target sweep; returns the tidy rows of its jobs (final results
    and curve points "epoch-K" / "alpha-A"), read from the results files whose identity they have.

    The model is the profile's base model, or its knowledge-injected version if the profile has `inject`
    (built once and cached); `model_and_tokenizer` overrides it (tests pass a tiny model). `mia=False`
    skips membership inference and utility (partial-layer figures need only the probes).
    """
    params = as_params(params)
    planned = sweep_jobs(params, mia)
    # Under `accelerate launch`, each process takes its share of the targets (all of them, if sharded).
    mine = {t.index for t in distributed.jobs(RWKU(params["data"]).select(params["targets"]))}
    _run_jobs(params, model_and_tokenizer, [j for j in planned if j.targets[0].index in mine], "sweep")
    return results.load_rows(params["profile"], injection.model_label(params), planned)


def _run_jobs(params: dict, model_and_tokenizer, mine: list[Job], desc: str, once=None) -> None:
    """Run this process's unfinished jobs on one loaded model, then wait for the other processes' shares.
    `once`: what one attempt of a job does (default `_run_job_once`; rwku_nb.robustness passes its own)."""
    label = injection.model_label(params)
    done = distributed.agree([results.is_finished(params["profile"], label, j) for j in mine])
    todo = [job for job, finished in zip(mine, done) if not finished]  # sharded: process 0's view, for all
    with distributed.main_first():  # the first process builds the model caches, the others read them
        loaded = load_for(params, model_and_tokenizer) if todo else None
    if loaded:
        model, tokenizer, _ = loaded
        rank, size = distributed.world()
        if distributed.sharded():
            _shard(model, rank, size)
        original = variants.snapshot_weights(model)
        for job in tqdm(todo, desc=desc):
            run_job(model, tokenizer, original, job, params, label, once)
            if size > 1 and distributed.writes():  # which process did what (the sharding tests read these lines)
                print(f"[process {rank}/{size}] {job.setting} {job.method} {job.variant} target(s) "
                      f"{','.join(str(t.index) for t in job.targets)}{' (sharded)' if distributed.sharded() else ''}",
                      flush=True)
    distributed.wait()


def _shard(model, rank: int, size: int) -> None:
    """Shard the sweep's model over the processes (distributed.shard) and say what this one holds."""
    try:
        layers = variants.decoder_layers(model)
    except RwkuError as e:
        raise RwkuError(f"{e} FSDP sharding wraps each decoder layer; for other models launch with "
                        "params/accelerate/multi_gpu.yaml (one model per process).") from None
    distributed.shard(model, layers)
    held = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    print(f"[process {rank}/{size}] sharded: holds {held} of {total} parameter values", flush=True)


def sweep_predictions(params: dict | str) -> pd.DataFrame:
    """Per-probe predictions of a profile's single-target sweep (its methods, variants and targets)."""
    params = as_params(params)
    preds = results.load_predictions(params["profile"], injection.model_label(params), sweep_jobs(params))
    return preds.query("setting == @SINGLE").reset_index(drop=True) if len(preds) else preds


def batch_jobs(params: dict) -> list[Job]:
    """The batch-target jobs: for every N in `batch_sizes`, the first N of `batch_targets` at once, per method."""
    pool = RWKU(params["data"]).select(params["batch_targets"])
    if max(params["batch_sizes"]) > len(pool):
        raise RwkuError(f"batch_sizes goes up to {max(params['batch_sizes'])} targets but batch_targets "
                        f"{params['batch_targets']!r} holds {len(pool)}; shrink batch_sizes or widen batch_targets.")
    label = injection.model_label(params)
    return [make_job(params, label, pool[:n], m, params["batch_variant"], f"batch-{n}", False)
            for n in params["batch_sizes"] for m in params["batch_methods"]]


def run_batch(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Batch-target unlearning: for every N in `batch_sizes`, the first N of `batch_targets` unlearned
    at once by each of `batch_methods` (`batch_variant`: full fine-tuning as in the paper, or LoRA), then
    each of the N targets evaluated (probes)."""
    params = as_params(params)
    planned = batch_jobs(params)
    _run_jobs(params, model_and_tokenizer, distributed.jobs(planned), "batch-target")
    return results.load_rows(params["profile"], injection.model_label(params), planned)


def layer_params(params: dict) -> dict:
    """The profile as its partial-layer sweep: `layer_methods` x the 'layers-A-B' variants of `layer_windows`."""
    return {**params, "methods": params["layer_methods"], "variants": layer_variants(params)}


def run_layers(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Partial-layer unlearning: each of `layer_methods` trains only the decoder layers of each window
    in `layer_windows` (variants 'layers-A-B'), on every target; probes evaluated, no MIA."""
    return run_sweep(layer_params(as_params(params)), model_and_tokenizer, mia=False)


def before_rows(params: dict | str) -> pd.DataFrame:
    """'Before' rows of the model as released and, if the profile injects knowledge, of the injected
    model, with a `knowledge` column ('real-world knowledge' / 'injected knowledge')."""
    params = as_params(params)
    frames = []
    for inject_spec in (None, params["inject"]) if params["inject"] else (None,):
        p = {**params, "methods": ["before"], "inject": inject_spec}
        rows = run_sweep(p).query("method == 'before' and setting == @SINGLE")
        frames.append(rows.assign(knowledge=injection.knowledge(p)))
    return pd.concat(frames, ignore_index=True)


def memorization(params: dict | str) -> pd.DataFrame:
    """EM and NLL (paper Fig. 1) of the profile's targets' texts per kind (`memorization.KINDS`, at most
    `memorization_size` each), for the model as released and, if the profile injects, its injected version;
    a `knowledge` column says which. Computed once per profile and stored beside its results."""
    params = as_params(params)
    targets = RWKU(params["data"]).select(params["targets"])
    key = memorization_key(params)

    def compute() -> pd.DataFrame:
        frames = []
        for inject_spec in (None, params["inject"]) if params["inject"] else (None,):
            p = {**params, "inject": inject_spec}
            model, tokenizer, _ = injection.load(p)
            rows = memorization_rows(model, tokenizer, targets, params["memorization_size"], params["max_length"],
                                     params["mia_batch_size"], model_name=injection.knowledge(p))
            frames.append(rows.assign(knowledge=injection.knowledge(p)))
            del model
        return pd.concat(frames, ignore_index=True)

    with distributed.main_first():  # computed by one process, read by the others
        return results.cached_frame(params["profile"], injection.model_label(params), "memorization", key, compute)


def knowledge_ranking(params: dict | str) -> pd.DataFrame:
    """Every target of the data source ranked by how well the model as released completes its forget FB
    and QA probes (`memorization.knowledge_ranking`); computed once per profile and stored."""
    params = as_params(params)
    targets = RWKU(params["data"]).select("all")
    key = ranking_key(params)

    def compute() -> pd.DataFrame:
        model, tokenizer = models.load_model(params["model"], params["device"], params["dtype"])
        return rank_targets(model, tokenizer, targets, batch_size=params["eval_batch_size"])

    with distributed.main_first():
        return results.cached_frame(params["profile"], params["model"], "ranking", key, compute)


def memorization_key(params: dict) -> dict:
    """What shapes notebook 01's memorization table (its cached_frame key): the models (the label holds
    the injection key), the targets' data by content, the sizes."""
    targets = RWKU(params["data"]).select(params["targets"])
    return {"table": "memorization", "base": model_identity(params, params["model"]), "inject": params["inject"],
            "label": injection.model_label(params), **data_identity(targets), "size": params["memorization_size"],
            "max_length": params["max_length"]}


def ranking_key(params: dict) -> dict:
    """What shapes the knowledge ranking of every target (its cached_frame key)."""
    return {"table": "ranking", **model_identity(params, params["model"]),
            **data_identity(RWKU(params["data"]).select("all"))}


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


def _run_job_once(model, tokenizer, original, job: Job, params: dict, label: str) -> None:
    targets, method, variant, setting, mia = list(job.targets), job.method, job.variant, job.setting, job.mia
    spec = METHODS[method]
    variants.restore_weights(model, original)
    seed_everything(params["seed"])
    corpora = [{kind: training_corpus(model, tokenizer, t, kind, params, label) for kind in spec.corpora}
               for t in targets]
    seed_everything(params["seed"])
    curve = params["curve"] and setting == SINGLE and not layer_window(variant)  # Table 1 runs only

    def evaluate_all(m, how: dict, final: bool) -> dict:
        # MIA and utility on the final model of a run that asks for them; curve points get probes only.
        return {t.index: evaluate_target(m, tokenizer, t, params, icu=how.get("icu", False), mia=final and mia,
                                         utility=final and mia and setting == SINGLE)
                for t in targets}

    def store(at_setting: str, evaluated: dict, info: dict) -> None:
        for t in targets:
            _save(params, label, job, at_setting, t, *evaluated[t.index], info, corpora)

    ctx_model = prepare_variant(model, variant, params) if spec.trains else model

    def on_epoch_end(epoch):
        store(f"epoch-{epoch}", evaluate_all(ctx_model, {}, False), {"epoch": epoch})

    ctx = Context(ctx_model, tokenizer, targets, corpora, params, variant, on_epoch_end if curve else None)
    how = {}
    try:
        how = spec.run(ctx)
        ctx_model.eval()
        evaluated = evaluate_all(ctx_model, how, True)
        if curve and "vector" in how:
            _steering_curve(ctx_model, how, params, store, evaluate_all)
    finally:
        if "detach" in how:
            how["detach"]()
        if ctx_model is not model:
            variants.remove_lora(ctx_model)
        variants.restore_weights(model, original)
    store(setting, evaluated, ctx.info)


def _steering_curve(model, how: dict, params: dict, store, evaluate_all) -> None:
    """RepE trade-off points: the same control vector added at each weight of `repe_alphas`."""
    from .methods import repe

    how["detach"]()  # the Table 1 weight's hook; each point attaches its own
    for alpha in params["repe_alphas"]:
        handle = repe.attach(model, how["vector"], how["layer"], alpha)
        try:
            evaluated = evaluate_all(model, {}, False)
        finally:
            handle.remove()
        store(f"alpha-{alpha:g}", evaluated, {"alpha": alpha})


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


def as_params(params: dict | str) -> dict:
    """A profile name's validated parameters, or a dict of them validated."""
    return load_profile(params) if isinstance(params, str) else make_params(params)


def load_for(params: dict, model_and_tokenizer=None):
    """(model, tokenizer, label) of the profile, or the given (model, tokenizer) under the profile's label."""
    if model_and_tokenizer is None:
        return injection.load(params)
    return (*model_and_tokenizer, injection.model_label(params))
