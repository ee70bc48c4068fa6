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

from . import distributed, injection, models, results, selective
from . import utility as utility_metrics
from .config import layer_variants, layer_window, load_profile, make_params
from .corpus import generate_corpus, provided_corpus
from .data import RWKU
from .errors import RwkuError
from .evaluate import evaluate_mia, evaluate_probes, summarize_probes
from .memorization import knowledge_ranking as rank_targets
from .memorization import memorization_rows
from .methods import METHODS, Context
from .progress import tqdm
from .training import Diverged
from .results import SINGLE


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
    """One training corpus of a target (at most `corpus_size` samples): its Wikipedia passages, or
    positive/negative/reject samples generated zero-shot by the model named `label` (call before
    unlearning) or read from the provided files."""
    if kind == "passage":
        texts = [r["text"] for r in target.passages]
        if not texts:
            raise RwkuError(f"Target {target.index} ({target.name}) has no passage.json: GA* (ga_passage) needs "
                            "its Wikipedia passages. Drop ga_passage from the methods or pick a target that has them.")
        return texts[: params["corpus_size"]]  # the official GA* uses them all; corpus_size caps CPU runs
    if params["corpus"] == "provided":
        return provided_corpus(target, kind, params["corpus_size"])
    return generate_corpus(model, tokenizer, target, label, kind, params["corpus_size"],
                           params["corpus_max_new_tokens"], params["corpus_batch_size"], params["seed"])


def evaluate_target(model, tokenizer, target, params: dict, icu: bool = False,
                    mia: bool = True, utility: bool = False) -> tuple[list[dict], list[dict]]:
    """(metric rows, per-probe predictions) of one target under the profile's evaluation settings:
    forget/neighbor probes, then membership inference (`mia`) and the profile's utility sets (`utility`,
    each capped at `utility_size` items)."""
    preds = evaluate_probes(model, tokenizer, target, icu=icu, batch_size=params["eval_batch_size"],
                            max_new_tokens=params["max_new_tokens"], stop=params["stop"])
    rows = summarize_probes(preds, params["scorer"])
    if mia:
        rows += evaluate_mia(model, tokenizer, target, icu=icu, batch_size=params["mia_batch_size"])
    if utility and params["utility"]:
        sets = {name: utility_metrics.subset(target.utility(name), params["utility_size"])
                for name in params["utility"]}
        rows += utility_metrics.evaluate_utility(model, tokenizer, sets, icu_subject=target.name if icu else None,
                                                 batch_size=params["utility_batch_size"])
    return rows, preds


def run_sweep(params: dict | str, model_and_tokenizer=None, mia: bool = True) -> pd.DataFrame:
    """Run (or resume) a profile's single-target sweep; returns the profile's tidy rows for its model.

    The model is the profile's base model, or its knowledge-injected version if the profile has `inject`
    (built once and cached); `model_and_tokenizer` overrides it (tests pass a tiny model). `mia=False`
    skips membership inference (partial-layer figures need only the probes).
    """
    params = _params(params)
    targets = RWKU(params["data"]).select(params["targets"])
    label = injection.model_label(params)
    needs = {f"utility_{name}" for name in params["utility"]} if mia else set()
    # Under `accelerate launch`, each process takes its share of the targets (all of them, if sharded).
    mine = [(t, m, v) for t in distributed.jobs(targets) for m, v in jobs(params["methods"], params["variants"])]
    done = distributed.agree([results.is_finished(results.result_path(params["profile"], label, m, v, t.index), needs)
                              for t, m, v in mine])  # sharded: process 0's view of the store, for all
    todo = [job for job, finished in zip(mine, done) if not finished]
    _run_jobs(params, model_and_tokenizer, label, todo, "sweep",
              lambda t, m, v: ([t], m, v, SINGLE, mia))
    return _own(results.load_rows(params["profile"], label), params, targets)


def _run_jobs(params: dict, model_and_tokenizer, label: str, todo: list, desc: str, job_args) -> None:
    """Run this process's unfinished jobs (`job_args(*job)` -> run_job's targets, method, variant, setting,
    mia) on one loaded model, then wait for the other processes' shares."""
    with distributed.main_first():  # the first process builds the model caches, the others read them
        loaded = _load(params, model_and_tokenizer, label) if todo else None
    if loaded:
        model, tokenizer, label = loaded
        rank, size = distributed.world()
        if distributed.sharded():
            _shard(model, rank, size)
        original = models.snapshot_weights(model)
        for job in tqdm(todo, desc=desc):
            targets, method, variant, setting, mia = job_args(*job)
            run_job(model, tokenizer, original, targets, method, variant, params, label, setting, mia=mia)
            if size > 1 and distributed.writes():  # which process did what (the sharding tests read these lines)
                print(f"[process {rank}/{size}] {setting} {method} {variant} target(s) "
                      f"{','.join(str(t.index) for t in targets)}{' (sharded)' if distributed.sharded() else ''}",
                      flush=True)
    distributed.wait()


def _shard(model, rank: int, size: int) -> None:
    """Shard the sweep's model over the processes (distributed.shard) and say what this one holds."""
    try:
        layers = models.decoder_layers(model)
    except RwkuError as e:
        raise RwkuError(f"{e} FSDP sharding wraps each decoder layer; for other models launch with "
                        "params/accelerate/multi_gpu.yaml (one model per process).") from None
    distributed.shard(model, layers)
    held = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    print(f"[process {rank}/{size}] sharded: holds {held} of {total} parameter values", flush=True)


def sweep_predictions(params: dict | str) -> pd.DataFrame:
    """Per-probe predictions of a profile's single-target sweep (its methods, variants and targets)."""
    params = _params(params)
    targets = RWKU(params["data"]).select(params["targets"])
    preds = results.load_predictions(params["profile"], injection.model_label(params))
    return _own(preds, params, targets).query("setting == @SINGLE").reset_index(drop=True)


def _own(df: pd.DataFrame, params: dict, targets) -> pd.DataFrame:
    """The rows of `df` that belong to this sweep's jobs: the store may hold other runs' results too
    (partial-layer variants, batch-target runs of the same method and variant), which must not change
    this sweep's rows or tables. Its settings: "single" and the curve points "epoch-K" / "alpha-A"."""
    if df.empty:
        return df
    keep = set(jobs(params["methods"], params["variants"]))
    mask = np.array([(m, v) in keep for m, v in zip(df["method"], df["variant"])], dtype=bool)
    setting = df["setting"].astype(str)
    mask &= ((setting == SINGLE) | setting.str.startswith("epoch-") | setting.str.startswith("alpha-")).to_numpy()
    return df[mask & df["target_index"].isin([t.index for t in targets])].reset_index(drop=True)


def run_batch(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Batch-target unlearning: for every N in `batch_sizes`, the first N of `batch_targets` unlearned
    at once by each of `batch_methods` (`batch_variant`: full fine-tuning as in the paper, or LoRA), then
    each of the N targets evaluated (probes)."""
    params = _params(params)
    pool = RWKU(params["data"]).select(params["batch_targets"])
    if max(params["batch_sizes"]) > len(pool):
        raise RwkuError(f"batch_sizes goes up to {max(params['batch_sizes'])} targets but batch_targets "
                        f"{params['batch_targets']!r} holds {len(pool)}; shrink batch_sizes or widen batch_targets.")
    label = injection.model_label(params)
    mine = distributed.jobs([(n, m) for n in params["batch_sizes"] for m in params["batch_methods"]])
    done = distributed.agree([all(results.result_path(params["profile"], label, m, params["batch_variant"], t.index,
                                                      f"batch-{n}").exists() for t in pool[:n])
                              for n, m in mine])
    todo = [job for job, finished in zip(mine, done) if not finished]
    _run_jobs(params, model_and_tokenizer, label, todo, "batch-target",
              lambda n, m: (pool[:n], m, params["batch_variant"], f"batch-{n}", False))
    rows = results.load_rows(params["profile"], label)
    settings = [f"batch-{n}" for n in params["batch_sizes"]]
    return rows[rows["setting"].isin(settings) & rows["method"].isin(params["batch_methods"])].reset_index(drop=True)


def run_layers(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Partial-layer unlearning: each of `layer_methods` trains only the decoder layers of each window
    in `layer_windows` (variants 'layers-A-B'), on every target; probes evaluated, no MIA."""
    params = _params(params)
    p = {**params, "methods": params["layer_methods"], "variants": layer_variants(params)}
    return run_sweep(p, model_and_tokenizer, mia=False)


def before_rows(params: dict | str) -> pd.DataFrame:
    """'Before' rows of the model as released and, if the profile injects knowledge, of the injected
    model, with a `knowledge` column ('real-world knowledge' / 'injected knowledge')."""
    params = _params(params)
    frames = []
    for inject_spec in (None, params["inject"]) if params["inject"] else (None,):
        p = {**params, "methods": ["before"], "inject": inject_spec}
        rows = run_sweep(p).query("method == 'before' and setting == @SINGLE")
        frames.append(rows.assign(knowledge=injection.knowledge(p)))
    return pd.concat(frames, ignore_index=True)


def memorization(params: dict | str) -> pd.DataFrame:
    """EM and NLL (paper Fig. 2) of the profile's targets' texts per kind (`memorization.KINDS`, at most
    `memorization_size` each), for the model as released and, if the profile injects, its injected version;
    a `knowledge` column says which. Computed once per profile and stored beside its results."""
    params = _params(params)
    targets = RWKU(params["data"]).select(params["targets"])
    key = {"table": "memorization", "model": params["model"], "inject": params["inject"],
           "targets": [t.index for t in targets], "size": params["memorization_size"],
           "max_length": params["max_length"]}

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
    params = _params(params)
    targets = RWKU(params["data"]).select("all")
    key = {"table": "ranking", "model": params["model"], "targets": [t.index for t in targets]}

    def compute() -> pd.DataFrame:
        model, tokenizer = models.load_model(params["model"], params["device"], params["dtype"])
        return rank_targets(model, tokenizer, targets, batch_size=params["eval_batch_size"])

    with distributed.main_first():
        return results.cached_frame(params["profile"], params["model"], "ranking", key, compute)


def run_job(model, tokenizer, original, targets: list, method: str, variant: str, params: dict, label: str,
            setting: str, mia: bool = True) -> None:
    """Unlearn `targets` (one, or several at once) with one method from the original weights, evaluate
    each target, store one result per target; with `curve`, also the per-epoch / per-alpha points.

    Faults: a NaN or infinite training loss stores a 'diverged' result (metric `diverged`, n = the step)
    and returns, so the sweep goes on; a device out-of-memory error restarts the job from the original
    weights with every batch halved (gradient accumulation doubled, so the effective training batch
    stays), down to batch size 1.
    """
    while True:
        try:
            return _run_job_once(model, tokenizer, original, targets, method, variant, params, label, setting, mia)
        except Diverged as e:
            for t in targets:
                _save(params, label, setting, method, variant, t, [{"metric": "diverged", "value": 1.0, "n": e.step}],
                      [], {"diverged": {"step": e.step, "loss": e.loss}}, [])
            tqdm.write(f"{method} {variant} diverged at step {e.step}; recorded, going on.")
            return
        except Exception as e:
            # A sharded run cannot retry on one process alone (the others would wait in a collective):
            # the error ends the launch, which stops every process.
            if not models.is_out_of_memory(e) or distributed.sharded():
                raise
            models.free_memory()
            smaller = _halved(params, method)
            if smaller is None:
                raise RwkuError(f"{method} {variant}: out of device memory even with every batch at 1. Use LoRA, "
                                "a smaller max_length, or a device with more memory.") from e
            tqdm.write(f"{method} {variant}: out of memory; retrying with batches halved.")
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


def _run_job_once(model, tokenizer, original, targets: list, method: str, variant: str, params: dict,
                  label: str, setting: str, mia: bool) -> None:
    spec = METHODS[method]
    models.restore_weights(model, original)
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
            _save(params, label, at_setting, method, variant, t, *evaluated[t.index], info, corpora)

    ctx_model = _prepare(model, variant, params) if spec.trains else model

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
            models.remove_lora(ctx_model)
        models.restore_weights(model, original)
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


def _prepare(model, variant: str, params: dict):
    """The model a trained method changes: LoRA-wrapped, partially frozen ('layers-A-B') or all trainable."""
    if variant == "lora":
        return models.add_lora(model, params["lora_r"], params["lora_alpha"], params["lora_dropout"],
                               tuple(params["lora_target_modules"]))
    for p in model.parameters():
        p.requires_grad_(True)
    window = layer_window(variant)
    if window:
        models.trainable_layers(model, *window)
    return model


def _save(params, label, setting, method, variant, target, rows, preds, info, corpora) -> None:
    meta = {"model": label, "base_model": params["model"], "knowledge": injection.knowledge(params),
            "setting": setting, "method": method, "variant": variant,
            "target_index": target.index, "target": target.name, "profile": params["profile"],
            "corpus": params["corpus"],
            "corpus_sizes": {kind: sum(len(c[kind]) for c in corpora) for kind in (corpora[0] if corpora else {})},
            "diverged": "diverged" in info,
            "scorer": params["scorer"], "stop": params["stop"], "seed": params["seed"]}
    keys = ("model", "setting", "method", "variant", "target_index", "target")
    tidy = [{**{k: meta[k] for k in keys}, **r} for r in rows]
    path = results.result_path(params["profile"], label, method, variant, target.index, setting)
    if distributed.writes():
        results.save_result(path, meta, tidy, preds, info)


def _params(params: dict | str) -> dict:
    return load_profile(params) if isinstance(params, str) else make_params(params)


def _load(params: dict, model_and_tokenizer, label: str):
    if model_and_tokenizer is None:
        return injection.load(params)
    return (*model_and_tokenizer, label)


# ------------------------------------------------------------------------------------------------------
# The seed-0 paper (notebook 07): per-sequence unlearning of memorized sequences


def selective_data(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """The forget and unseen sequences of notebook 07, one row each: role ('forget' / 'unseen'), seq,
    source, token ids, and the model's MA and EL_n before unlearning. Computed once per profile and stored.

    - `selective_data: extraction`: the first `selective_size` texts of `selective_file` (the Pile extraction
      subsets, 200 GPT-Neo tokens each) as forget sequences; unseen = valid_wikitext / valid_lambada texts.
    - `selective_data: rwku`: every `selective_length`-token window of the profile's targets' passages and
      forget member texts, the `selective_size` with the highest MA kept (the texts the model has memorized
      most); unseen = the same kinds of text of the sample's other targets (`heldout`, not unlearned nor
      injected), or the targets' counterfactual corpus (`counterfactual`, the provided negative texts).
    """
    params = _params(params)
    key = _selective_key(params, data_only=True)

    def compute() -> pd.DataFrame:
        model, tokenizer, _ = _load(params, model_and_tokenizer, injection.model_label(params))
        forget, unseen = _selective_sequences(params, model, tokenizer)
        frames = []
        for role, items in (("forget", forget), ("unseen", unseen)):
            seqs = [ids for _, ids in items]
            ma = selective.memorization_accuracy(model, tokenizer, seqs, params["eval_batch_size"])
            el = selective.extraction_likelihood(model, tokenizer, seqs, params["el_n"], params["el_stride"],
                                                 params["eval_batch_size"], desc=f"EL {role}")
            frames.append(pd.DataFrame({"role": role, "seq": range(len(seqs)), "source": [s for s, _ in items],
                                        "ids": seqs, "ma": ma, "el": el}))
        return pd.concat(frames, ignore_index=True)

    with distributed.main_first():
        return results.cached_frame(params["profile"], injection.model_label(params), "selective-data", key, compute)


def _selective_sequences(params: dict, model, tokenizer) -> tuple[list, list]:
    """(forget, unseen) lists of (source, token ids) for `selective_data`."""
    length, size = params["selective_length"], params["selective_size"]
    if params["selective_data"] == "extraction":
        texts = selective.read_csv_texts(params["selective_file"])
        forget = [(f"{params['selective_file']} row {i}", ids) for i, text in enumerate(texts)
                  for ids in selective.windows(tokenizer, [text], length, per_text=1)][:size]
        unseen_file = f"valid_{params['selective_unseen']}.csv"
        unseen = [(f"{unseen_file} row {i}", ids) for i, text in enumerate(selective.read_csv_texts(unseen_file))
                  for ids in selective.windows(tokenizer, [text], length, per_text=1)][: len(forget)]
    else:
        data = RWKU(params["data"])
        targets = data.select(params["targets"])
        pool = _rwku_windows(targets, tokenizer, length)
        if not pool:
            raise RwkuError(f"no passage or forget member text of targets {params['targets']!r} has "
                            f"{length} tokens; lower selective_length.")
        ma = selective.memorization_accuracy(model, tokenizer, [ids for _, ids in pool], params["eval_batch_size"])
        top = np.argsort(-ma, kind="stable")[: size or len(pool)]
        forget = [pool[i] for i in sorted(top)]
        if params["selective_unseen"] == "counterfactual":
            unseen = [(f"{t.name} counterfactual {i}", ids) for t in targets
                      for i, text in enumerate(provided_corpus(t, "negative"))
                      for ids in selective.windows(tokenizer, [text], length, per_text=1)]
        else:
            busy = {t.index for t in targets} | ({t.index for t in data.select(params["inject"])} if params["inject"] else set())
            others = [t for t in data.select("all") if t.index not in busy]
            unseen = _rwku_windows(others, tokenizer, length, per_text=1)
        unseen = utility_metrics.subset(unseen, len(forget))  # spread evenly over the texts
    if not forget or not unseen:
        raise RwkuError(f"profile {params['profile']}: no {'forget' if not forget else 'unseen'} sequence of "
                        f"{length} tokens; lower selective_length or pick other data.")
    return forget, unseen


def _rwku_windows(targets, tokenizer, length: int, per_text: int | None = None) -> list:
    out = []
    for t in targets:
        for kind, stem in (("passage", "passage"), ("forget member", "forget_mia")):
            if t.has(stem):
                for i, row in enumerate(t.rows(stem)):
                    out += [(f"{t.name} {kind} {i}", ids)
                            for ids in selective.windows(tokenizer, [row["text"]], length, per_text)]
    return out


def _selective_key(params: dict, data_only: bool = False) -> dict:
    keys = ["model", "inject", "targets", "selective_data", "selective_file", "selective_unseen", "selective_size",
            "selective_length", "el_n", "el_stride"]
    if not data_only:
        keys += ["sga_gamma", "tau_switch", "tau_coef", "ta_gamma", "ta_switch", "ta_coef", "selective_betas",
                 "selective_stop", "selective_lr", "selective_epochs", "selective_batch_size", "ppl_size",
                 "ppl_max_length", "seed", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"]
    return {"table": "selective", "data": str(params["data"]), **{k: params[k] for k in keys}}


def selective_thresholds(data: pd.DataFrame) -> dict:
    """{'ma': threshold, 'el': threshold}: the mean MA / EL_n of the unseen sequences."""
    unseen = data[data["role"] == "unseen"]
    return {m: selective.threshold(unseen[m]) for m in ("ma", "el")}


def run_selective(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Notebook 07: each of `selective_methods` x `selective_variants` unlearns the forget sequences from the
    original weights; one row per (method, variant, epoch, forget sequence) with MA, EL_n, the phase, and
    the perplexity on the validation texts at that epoch. Each run is stored once (a rerun resumes)."""
    params = _params(params)
    data = selective_data(params, model_and_tokenizer)
    thresholds = selective_thresholds(data)
    stop = thresholds["ma"] if params["selective_stop"] == "unseen" else float(params["selective_stop"])
    forget = data[data["role"] == "forget"]
    seqs = [list(ids) for ids in forget["ids"]]
    label = injection.model_label(params)
    loaded: dict = {}
    ppl_texts = {name: selective.read_csv_texts(f"valid_{name}.csv")[: params["ppl_size"]]
                 for name in ("wikitext", "lambada")}

    def measure(model) -> dict:
        p = params
        out = {"ma": selective.memorization_accuracy(model, loaded["tok"], seqs, p["eval_batch_size"]),
               "el": selective.extraction_likelihood(model, loaded["tok"], seqs, p["el_n"], p["el_stride"],
                                                     p["eval_batch_size"])}
        for name, texts in ppl_texts.items():
            out[f"ppl_{name}"] = selective.perplexity(model, loaded["tok"], texts, p["ppl_max_length"],
                                                      p["mia_batch_size"])
        return out

    def run(method: str, variant: str) -> pd.DataFrame:
        def compute() -> pd.DataFrame:
            if not loaded:
                loaded["model"], loaded["tok"], _ = _load(params, model_and_tokenizer, label)
                loaded["original"] = models.snapshot_weights(loaded["model"])
            model = loaded["model"]
            models.restore_weights(model, loaded["original"])
            seed_everything(params["seed"])
            trained = _prepare(model, variant, params)
            try:
                history = selective.unlearn(trained, loaded["tok"], seqs, selective.plan(method, params), measure,
                                            stop, params["selective_lr"], params["selective_epochs"],
                                            params["selective_batch_size"], tuple(params["selective_betas"]),
                                            params["seed"], desc=f"{method} {variant}")
            finally:
                if trained is not model:
                    models.remove_lora(trained)
                models.restore_weights(model, loaded["original"])
            return pd.DataFrame([{"method": method, "variant": variant, "epoch": r["epoch"], "phase": r["phase"],
                                  "seq": s, "ma": float(r["ma"][s]), "el": float(r["el"][s]),
                                  "ppl_wikitext": r["ppl_wikitext"], "ppl_lambada": r["ppl_lambada"]}
                                 for r in history for s in range(len(seqs))])

        key = {**_selective_key(params), "method": method, "variant": variant}
        return results.cached_frame(params["profile"], label, f"selective-{method}-{variant}", key, compute)

    runs = [(m, v) for m in params["selective_methods"] for v in params["selective_variants"]]
    for method, variant in distributed.share(runs):  # this process's runs; then read everyone's
        run(method, variant)
    distributed.wait()
    return pd.concat([run(m, v) for m, v in runs], ignore_index=True)
