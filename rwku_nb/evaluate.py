"""Forget/neighbor probe evaluation and membership inference on one target, batched.

Official semantics: jinzhuoran/RWKU, LLaMA-Factory/src/llmtuner/eval/eval_forget.py, eval_neighbor.py
and eval_mia.py (summarised in ../shared/PROTOCOL.md).
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import RwkuError
from .generation import greedy_generate
from .metrics import (
    mia_keys,
    mia_scores,
    nll_x100,
    official_prediction,
    roc_auc,
    rouge_l_recall,
    token_statistics,
)
from .models import padding_id
from .prompts import icu_subject, probe_prompt
from .scoring import forward_batches
from .utility import subset

LEVEL_NAMES = {1: "FB", 2: "QA", 3: "AA"}
PROBE_SETS = (("forget", 1), ("forget", 2), ("forget", 3), ("neighbor", 1), ("neighbor", 2))


def probe_rows(target) -> list[dict]:
    """Every forget (levels 1-3) and neighbor (levels 1-2) probe of a target, tagged with its set."""
    rows = []
    for split, level in PROBE_SETS:
        probes = target.forget(level) if split == "forget" else target.neighbor(level)
        for i, probe in enumerate(probes):
            rows.append({"set": split, "level": level, "index": i, "type": probe.get("type", ""),
                         "query": probe["query"], "answer": probe["answer"], "_probe": probe})
    return rows


@torch.no_grad()
def evaluate_probes(model, tokenizer, target, icu: bool | str = False, batch_size: int = 32,
                    max_new_tokens: int = 30, stop: str = "newline") -> list[dict]:
    """Per-probe predictions and ROUGE-L recall (x100, both scorers) for a target's probes; a target with
    no forget or no neighbor probes at all is an error (its scores would be NaN, not a measurement)."""
    rows = probe_rows(target)
    for split, levels in (("forget", "1/2/3"), ("neighbor", "1/2")):
        if not any(r["set"] == split for r in rows):
            raise RwkuError(f"{target.where()}: target {target.index} ({target.name}) has no {split} probes "
                            f"({split}_level{levels}.json are missing or empty): nothing to evaluate. Restore "
                            "the files from the RWKU release, or drop the target from `targets`.")
    files: dict[str, str] = {}
    names = []  # where each probe comes from, for errors about one prompt (e.g. longer than the context)
    for r in rows:
        kind = f"{r['set']}_level{r['level']}"
        files[kind] = files.get(kind) or target.where(kind)
        names.append(f"{files[kind]} row {r['index']}")
    prompts = [
        probe_prompt(tokenizer, r["_probe"], r["level"],
                     icu_subject=icu_subject(icu, r["_probe"].get("subject", target.name)))
        for r in rows
    ]
    texts = greedy_generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                            batch_size=batch_size, stop=stop, desc=f"probes {target.name}", names=names)
    out = []
    for row, text in zip(rows, texts):
        pred = official_prediction(text)  # strip; empty -> "NOANSWER", as the official code does
        row = {k: v for k, v in row.items() if k != "_probe"}
        row["prediction"] = pred
        row["rwku"] = 100 * rouge_l_recall(pred, row["answer"], scorer="rwku")
        row["rouge-score"] = 100 * rouge_l_recall(pred, row["answer"], scorer="rouge-score")
        out.append(row)
    return out


def summarize_probes(records: list[dict], scorer: str = "rwku") -> list[dict]:
    """(metric, value, n) rows: mean recall per set and level, and the probe-weighted 'All'."""
    out = []
    for split in ("forget", "neighbor"):
        levels = (1, 2, 3) if split == "forget" else (1, 2)
        pooled = []
        for level in levels:
            vals = [r[scorer] for r in records if r["set"] == split and r["level"] == level]
            pooled += vals
            out.append({"metric": f"{split}_{LEVEL_NAMES[level].lower()}",
                        "value": float(np.mean(vals)) if vals else float("nan"), "n": len(vals)})
        # "All" pools every probe of the set (probe-count weighted), not the mean of the level means.
        out.append({"metric": f"{split}_all", "value": float(np.mean(pooled)) if pooled else float("nan"),
                    "n": len(pooled)})
    return out


def _mia_texts(rows: list[dict], icu, name: str) -> list[str]:
    from .prompts import ICU_TEMPLATE

    texts = [r["text"] for r in rows]
    if icu:  # official eval_mia.py prepends the ICU prompt to the raw text
        texts = [ICU_TEMPLATE.format(subject=icu_subject(icu, r.get("subject", name))) + t for r, t in zip(rows, texts)]
    return texts


@torch.no_grad()
def mia_member_scores(model, tokenizer, texts: list[str], batch_size: int = 8, desc: str = "mia") -> list[dict]:
    """Official per-text MIA scores (loss, zlib, mink_r, mink++_r), batched by similar length."""
    if not texts:
        return []
    encoded = [tokenizer(t)["input_ids"] for t in texts]  # = tokenizer.encode(text), as the official code
    scores: list[dict | None] = [None] * len(texts)
    for batch in forward_batches(model, encoded, padding_id(tokenizer), batch_size, key=len, desc=desc):
        for r, (lp, mu, var) in enumerate(token_statistics(batch.logits, batch.input_ids, batch.attention_mask)):
            scores[batch.rows[r]] = mia_scores(lp, mu, var, texts[batch.rows[r]])
    return scores


def evaluate_mia(model, tokenizer, target, icu: bool | str = False, batch_size: int = 8,
                 size: int | None = None) -> list[dict]:
    """(metric, value, n) rows of MIA on the forget (FM) and retain (RM) member sets, with FM-vs-RM AUC;
    `size` caps each set at that many texts, spread evenly over it (None: all, as the paper).

    Loss is reported as the paper does: NLL x 100 (mean token log-likelihood -2.27 -> 227).
    """
    fm = mia_member_scores(model, tokenizer, _mia_texts(subset(target.mia_forget, size), icu, target.name), batch_size,
                           "MIA FM")
    rm = mia_member_scores(model, tokenizer, _mia_texts(subset(target.mia_retain, size), icu, target.name), batch_size,
                           "MIA RM")
    out = []
    for name, scores in (("fm", fm), ("rm", rm)):
        if not scores:
            continue
        n = len(scores)
        # Official means (eval_mia.py prints loss, zlib and Min-K%++ 20%); loss in the paper's NLL x 100.
        out.append({"metric": f"mia_{name}_loss", "value": nll_x100(_mean(scores, "loss")), "n": n})
        out.append({"metric": f"mia_{name}_zlib", "value": _mean(scores, "zlib"), "n": n})
        out.append({"metric": f"mia_{name}_minkpp20", "value": _mean(scores, "mink++_0.2"), "n": n})
    if fm and rm:
        for key in mia_keys():
            pos = [s[key] for s in fm if not np.isnan(s[key])]
            neg = [s[key] for s in rm if not np.isnan(s[key])]
            if pos and neg:  # Min-K% at small k is undefined (nan) for very short texts
                # P(a forget member scores as more member-like than a retain member): about 0.5 when
                # both are equally known; below 0.5 once the forget members look unseen.
                out.append({"metric": f"mia_auc_{key}", "value": roc_auc(pos, neg), "n": len(pos) + len(neg)})
    return out


def _mean(scores: list[dict], key: str) -> float:
    vals = [s[key] for s in scores if not np.isnan(s[key])]
    return float(np.mean(vals)) if vals else float("nan")


# --- benchmark a checkpoint: python -m rwku_nb.evaluate MODEL --------------------------------------------

EVALUATE_PROFILE = "evaluate"  # the results store the command writes to (results/evaluate/<model>/...)


def checkpoints(model: str) -> dict[int, str] | None:
    """{target index: checkpoint directory} when `model` is a directory of per-target checkpoints
    (`<dir>/<N>_<Name>/config.json`, one model unlearned per target); None for one model."""
    import re
    from pathlib import Path

    root = Path(model).expanduser()
    if not root.is_dir() or (root / "config.json").is_file():
        return None
    found = {int(m.group(1)): str(d) for d in sorted(root.iterdir())
             if (m := re.match(r"^(\d+)_", d.name)) and (d / "config.json").is_file()}
    return found or None


def score(model: str, targets=None, profile: str = "gpu-llama3-8b", overrides: dict | None = None,
          attacks: bool = False):
    """The Before-style evaluation of `model` (a hub id, a model directory, or a directory of per-target
    checkpoints) on RWKU under `profile`'s evaluation settings: (Table 1 row beside the paper's rows, the
    tidy rows, the robustness table or None). Results and per-probe predictions go to the `evaluate` results
    store. With `attacks`, the model is also relearned and quantized as rwku_nb.robustness does (the profile's
    relearning and quantization settings; relearning on the targets' Wikipedia passages and on WikiText, since
    a model unlearned elsewhere comes without the forget corpus its original model wrote)."""
    import pandas as pd

    from . import paper, robustness, runner, tables
    from .config import load_profile
    from .data import RWKU

    overrides = dict(overrides or {})
    if attacks:
        overrides.setdefault("relearn_sources", ["passage", "wikitext"])
        if "forget" in overrides["relearn_sources"]:
            raise RwkuError("relearn source 'forget' is the forget corpus the original model wrote about the target "
                            "before unlearning; a model unlearned elsewhere comes without it. Use relearn_sources: "
                            "[passage, wikitext].")
    base = {**overrides, "methods": ["before"], "inject": None, "profile": EVALUATE_PROFILE,
            "robust_methods": ["before"]}
    if targets is not None:
        base["targets"] = targets
    params = load_profile(profile, {**base, "model": model})
    per_target = checkpoints(model)
    if per_target is None:
        runs = [params]
    else:
        wanted = RWKU(params["data"]).select(params["targets"])
        missing = [f"{t.index}_{t.name.replace(' ', '_')}" for t in wanted if t.index not in per_target]
        if missing:
            raise RwkuError(f"{model}: no checkpoint for target(s) {', '.join(missing)}; expected one model "
                            "directory per target named <N>_<Name>/ (config.json + weights), or pass --targets.")
        runs = [load_profile(profile, {**base, "model": per_target[t.index], "targets": str(t.index)}) for t in wanted]
    rows = pd.concat([runner.run_sweep(p) for p in runs], ignore_index=True)
    table = tables.table1(rows).rename(index={"Before": model})
    # the paper's rows of the profile's own model where it has them (Table 2 for gpu-phi3-mini), else Table 1
    paper_label, paper_rows = paper.paper_model(load_profile(profile)["model"]) or paper.PAPER_MODELS[0][1:]
    beside = pd.concat({"this model": table, paper_label: paper.paper_table1(paper_rows)}, names=["Source", "Method"])
    robust = None
    if attacks:
        attacked = pd.concat([robustness.run_robustness(p) for p in runs], ignore_index=True)
        robust = robustness.robustness_table(attacked).rename(index={"Before": model})
    return beside, rows, robust


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    import yaml

    from . import results, tables
    from .config import parse_overrides

    parser = argparse.ArgumentParser(
        prog="python -m rwku_nb.evaluate",
        description="Score a model unlearned elsewhere on RWKU with the official evaluation (forget, neighbor, "
                    "MIA, utility); writes its Table 1 row beside the paper's to figures/ and its results and "
                    "per-probe predictions to results/evaluate/.")
    parser.add_argument("model", help="a hub id, a local model directory, or a directory of per-target "
                                      "checkpoints named <N>_<Name>/")
    parser.add_argument("--targets", default=None, help="e.g. 1-10 or '[1, 5]' (default: the profile's)")
    parser.add_argument("--profile", default="gpu-llama3-8b",
                        help="whose evaluation settings (default gpu-llama3-8b: the paper's; cpu-smoke: a quick look)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda or cpu")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), bfloat16, float32")
    parser.add_argument("-y", "--overrides", default="{}", help="YAML mapping of profile keys, e.g. \"{utility_size: 50}\"")
    parser.add_argument("--attacks", action="store_true",
                        help="also relearn (on the targets' Wikipedia passages and on WikiText) and quantize the model "
                             "and score it after each attack (the profile's relearn_* and quant_* settings)")
    args = parser.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides)
        targets = yaml.safe_load(args.targets) if args.targets else None
        table, rows, robust = score(args.model, targets, args.profile,
                                    {"device": args.device, "dtype": args.dtype, **overrides}, args.attacks)
        caption = (f"{args.model} on RWKU targets {sorted(rows['target_index'].unique().tolist())}, "
                   f"evaluation settings of profile {args.profile}")
        name = f"evaluate_{results.slug(args.model)}"
        written = tables.write_table(table, name, caption)
        if robust is not None:
            written += tables.write_table(robust, f"{name}_robustness", f"{caption}: forget All after relearning "
                                          "and quantization attacks (rwku_nb.robustness)")
    except RwkuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(caption, tables.to_markdown(table), *([tables.to_markdown(robust)] if robust is not None else []),
          "written: " + ", ".join(written), sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
