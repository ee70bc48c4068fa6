"""The sweeps: which jobs each experiment asks for, run on one loaded model through the one job lifecycle
(rwku_nb.lifecycle: from the original weights, unlearn, evaluate, store one result file per evaluated target);
a rerun skips finished jobs.

- `run_sweep`: single-target (Table 1): every target x (method, variant); with `curve`, trained methods
  are also evaluated after every epoch and RepE at every `repe_alphas` weight (trade-off curves).
- `run_batch`: batch-target: the first N of `batch_targets` unlearned together, every one evaluated.
- `run_layers`: partial-layer: `run_sweep` with the variants 'layers-A-B' of `layer_windows`.
- `before_rows`: the Before rows of the model as released and of its knowledge-injected version.
"""
from __future__ import annotations

import pandas as pd

from . import distributed, injection, models, results, variants
from .config import layer_variants, load_profile, make_params
from .data import RWKU
from .errors import RwkuError
from .jobs import SINGLE, Job, Point, data_identity, make_job, model_identity
from .lifecycle import run_job
from .memorization import knowledge_ranking as rank_targets
from .memorization import memorization_rows
from .methods import METHODS
from .progress import tqdm


def jobs(methods: list[str], variants: list[str]) -> list[tuple[str, str]]:
    """(method, variant) pairs; methods that train nothing have the single variant 'none'."""
    out = []
    for method in methods:
        out += [(method, v) for v in variants] if METHODS[method].trains else [(method, "none")]
    return out


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
    `once`: what one attempt of a job does (default `lifecycle._run_job_once`; rwku_nb.robustness passes
    its own, over the same `lifecycle.unlearned`)."""
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
    return [make_job(params, label, pool[:n], m, v, Point("batch", n).name, False)
            for n in params["batch_sizes"] for m, v in jobs(params["batch_methods"], [params["batch_variant"]])]


def run_batch(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Batch-target unlearning: for every N in `batch_sizes`, the first N of `batch_targets` unlearned
    at once by each of `batch_methods` (`batch_variant`: full fine-tuning as in the paper, or LoRA), then
    each of the N targets evaluated (probes)."""
    params = as_params(params)
    planned = batch_jobs(params)
    _run_jobs(params, model_and_tokenizer, distributed.jobs(planned), "batch-target")
    return results.load_rows(params["profile"], injection.model_label(params), planned)


def layer_params(params: dict) -> dict:
    """The profile as its partial-layer sweep: `layer_methods` x the 'layers-A-B' variants of `layer_windows`, on
    `layer_targets` (None: the profile's targets)."""
    targets = params["targets"] if params["layer_targets"] is None else params["layer_targets"]
    return {**params, "methods": params["layer_methods"], "variants": layer_variants(params), "targets": targets}


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


def as_params(params: dict | str) -> dict:
    """A profile name's validated parameters, or a dict of them validated."""
    return load_profile(params) if isinstance(params, str) else make_params(params)


def load_for(params: dict, model_and_tokenizer=None):
    """(model, tokenizer, label) of the profile, or the given (model, tokenizer) under the profile's label."""
    if model_and_tokenizer is None:
        return injection.load(params)
    return (*model_and_tokenizer, injection.model_label(params))
