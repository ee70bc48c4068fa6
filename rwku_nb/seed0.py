"""The seed-0 paper's experiment (notebook 07): per-sequence unlearning of memorized sequences.

`selective_data` picks the forget and unseen sequences and measures them before unlearning;
`run_selective` unlearns them with GA-seq, TA, SGA and TAU (rwku_nb.selective), one stored table per run.
"""
from __future__ import annotations

from itertools import islice

import numpy as np
import pandas as pd

from . import distributed, injection, lifecycle, results, runner, selective, variants
from . import utility as utility_metrics
from .corpus import provided_corpus
from .data import RWKU
from .errors import RwkuError
from .jobs import data_identity, digest, model_identity


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
    params = runner.as_params(params)
    key = _selective_key(params, data_only=True)

    def compute() -> pd.DataFrame:
        model, tokenizer, _ = runner.load_for(params, model_and_tokenizer)
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
        def first(name: str, n: int | None) -> list:  # tokenizes only as many texts as it takes
            return list(islice(((f"{name} row {i}", ids) for i, text in enumerate(selective.read_csv_texts(name))
                                for ids in selective.windows(tokenizer, [text], length, per_text=1)), n))
        forget = first(params["selective_file"], size)
        unseen = first(f"valid_{params['selective_unseen']}.csv", len(forget))
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
    """Everything that shapes notebook 07's tables: the model, the data by content (the extraction files'
    texts, the RWKU targets' digests), the selection and EL settings, and (runs) the methods' settings."""
    keys = ["inject", "targets", "selective_data", "selective_file", "selective_unseen", "selective_size",
            "selective_length", "el_n", "el_stride"]
    if not data_only:
        keys += ["sga_gamma", "tau_switch", "tau_coef", "ta_gamma", "ta_switch", "ta_coef", "selective_betas",
                 "selective_stop", "selective_lr", "selective_epochs", "selective_batch_size", "ppl_size",
                 "ppl_max_length", "seed", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules"]
    files = {"valid_wikitext.csv", "valid_lambada.csv"} if not data_only else set()
    if params["selective_data"] == "extraction":
        files |= {params["selective_file"], f"valid_{params['selective_unseen']}.csv"}
    data = {name: digest(selective.read_csv_texts(name)) for name in sorted(files)}
    if params["selective_data"] == "rwku":
        data.update(data_identity(RWKU(params["data"]).select("all")))
    return {"table": "selective", **model_identity(params, injection.model_label(params)), "data": data,
            **{k: params[k] for k in keys}}


def selective_thresholds(data: pd.DataFrame) -> dict:
    """{'ma': threshold, 'el': threshold}: the mean MA / EL_n of the unseen sequences."""
    unseen = data[data["role"] == "unseen"]
    return {m: selective.threshold(unseen[m]) for m in ("ma", "el")}


def run_selective(params: dict | str, model_and_tokenizer=None) -> pd.DataFrame:
    """Notebook 07: each of `selective_methods` x `selective_variants` unlearns the forget sequences from the
    original weights; one row per (method, variant, epoch, forget sequence) with MA, EL_n, the phase, and
    the perplexity on the validation texts at that epoch. Each run is stored once (a rerun resumes)."""
    params = runner.as_params(params)
    data = selective_data(params, model_and_tokenizer)
    thresholds = selective_thresholds(data)
    stop = thresholds["ma"] if params["selective_stop"] == "unseen" else float(params["selective_stop"])
    forget = data[data["role"] == "forget"]
    seqs = [list(ids) for ids in forget["ids"]]
    label = injection.model_label(params)
    loaded: dict = {}
    ppl_texts = {name: selective.read_csv_texts(f"valid_{name}.csv")[: params["ppl_size"]]
                 for name in ("wikitext", "lambada")}

    def perplexities(model) -> dict:
        return {f"ppl_{name}": selective.perplexity(model, loaded["tok"], texts, params["ppl_max_length"],
                                                    params["mia_batch_size"]) for name, texts in ppl_texts.items()}

    def measure(model) -> dict:
        p = params
        return {"ma": selective.memorization_accuracy(model, loaded["tok"], seqs, p["eval_batch_size"]),
                "el": selective.extraction_likelihood(model, loaded["tok"], seqs, p["el_n"], p["el_stride"],
                                                      p["eval_batch_size"]),
                **perplexities(model)}

    def measure_run():
        """`measure` for one run, whose first call (epoch 0) is the original weights (LoRA starts as their very
        function, B = 0): their MA and EL are the selective data's, measured there, and their perplexities are
        measured once for all the runs."""
        calls = []

        def first_or_measure(model) -> dict:
            calls.append(1)
            if len(calls) > 1:
                return measure(model)
            if "before" not in loaded:
                loaded["before"] = perplexities(model)
            return {"ma": forget["ma"].to_numpy(copy=True), "el": forget["el"].to_numpy(copy=True), **loaded["before"]}
        return first_or_measure

    def run(method: str, variant: str) -> pd.DataFrame:
        def compute() -> pd.DataFrame:
            if not loaded:
                loaded["model"], loaded["tok"], _ = runner.load_for(params, model_and_tokenizer)
                loaded["original"] = variants.snapshot_weights(loaded["model"])
            model = loaded["model"]
            variants.restore_weights(model, loaded["original"])
            lifecycle.seed_everything(params["seed"])
            trained = lifecycle.prepare_variant(model, variant, params)
            try:
                history = selective.unlearn(trained, loaded["tok"], seqs, selective.plan(method, params), measure_run(),
                                            stop, params["selective_lr"], params["selective_epochs"],
                                            params["selective_batch_size"], tuple(params["selective_betas"]),
                                            params["seed"], desc=f"{method} {variant}")
            finally:
                if trained is not model:
                    variants.remove_lora(trained)
                variants.restore_weights(model, loaded["original"])
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
