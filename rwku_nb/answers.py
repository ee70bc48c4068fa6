"""Per-probe views of the predictions (notebooks 05 and 06): forget score per adversarial attack type (paper
Fig. 4), what kind of answer each method gives (correct, partial, wrong, refusal, empty), side-by-side case
studies (paper Tables 7-9, 11-12) and how much the ROUGE-L implementation matters."""
from __future__ import annotations

import re

import pandas as pd

from .data import AA_TYPES, aa_type
from .tables import _row_order, _single_predictions

# A prediction counts as a refusal when it says it does not know or will not answer (rwku_nb's own
# phrase list: the paper's case study describes refusals but gives no rule).
REFUSAL_RE = re.compile(
    r"\b(i (do not|don't|can ?not|can't|am not able|'m not able|have no|am unable|'m unable)|i'm sorry|i am sorry|"
    r"i apologi[sz]e|no (idea|information|knowledge)|not (sure|familiar|aware)|unable to|"
    r"not something i know)\b", re.IGNORECASE)
BEHAVIOURS = ("correct", "partial", "wrong", "refusal", "empty")


def attack_table(preds: pd.DataFrame, scorer: str = "rwku") -> pd.DataFrame:
    """Forget score per level-3 attack type (paper Fig. 4): per method row, the mean ROUGE-L recall x100
    of each type's probes, averaged over targets (each target counts once). Cross-lingual probes of
    every language form one type."""
    df = _single_predictions(preds)
    df = df[(df["set"] == "forget") & (df["level"] == 3)]
    df = df.assign(attack=[aa_type(t) for t in df["type"]])
    per_target = df.groupby(["Method", "attack", "target_index"])[scorer].mean()
    out = per_target.groupby(["Method", "attack"]).mean().unstack("attack")
    out = out.reindex(columns=[a for a in AA_TYPES if a in out.columns])
    out.columns.name = "Attack"
    return out.loc[_row_order(out.index)]


def attack_counts(preds: pd.DataFrame) -> pd.Series:
    """Number of level-3 probes per attack type behind `attack_table` (per target, summed)."""
    df = _single_predictions(preds)
    df = df[(df["set"] == "forget") & (df["level"] == 3) & (df["method"] == df["method"].iloc[0])]
    counts = pd.Series([aa_type(t) for t in df["type"]]).value_counts()
    return counts.reindex([a for a in AA_TYPES if a in counts.index]).rename("probes")


def attack_change(table: pd.DataFrame) -> pd.DataFrame:
    """`attack_table` minus its Before row: how many points each method removed under each attack (near 0:
    the attack still recovers what the method was meant to remove)."""
    return table.drop(index="Before") - table.loc["Before"]


def behaviour(prediction: str, score: float) -> str:
    """One prediction's behaviour: 'empty' (nothing generated: the official NOANSWER), 'refusal' (it
    declines), else by ROUGE-L recall: 'correct' (100), 'partial' (between) or 'wrong' (0)."""
    if prediction == "NOANSWER":
        return "empty"
    if REFUSAL_RE.search(prediction):
        return "refusal"
    return "correct" if score >= 100 else "wrong" if score <= 0 else "partial"


def behaviour_table(preds: pd.DataFrame, scorer: str = "rwku") -> pd.DataFrame:
    """Share (%) of forget probes each method answers correctly, partially or wrongly, refuses, or leaves
    empty: refusal (ICU, RT) vs wrong-answer (GA, DPO, NPO) unlearning."""
    df = _single_predictions(preds)
    df = df[df["set"] == "forget"]
    kinds = [behaviour(p, s) for p, s in zip(df["prediction"], df[scorer])]
    out = pd.crosstab(df["Method"], pd.Series(kinds, index=df.index, name="Behaviour"), normalize="index") * 100
    out = out.reindex(columns=list(BEHAVIOURS), fill_value=0.0)
    return out.loc[_row_order(out.index)]


def case_study(preds: pd.DataFrame, per_level: int = 2, target_index: int | None = None,
               split: str = "forget") -> pd.DataFrame:
    """Side-by-side predictions on selected probes of `split` ("forget": paper Tables 7-9; "neighbor": Tables
    11-12): the first `per_level` probes of each level that the original model answers fully (recall 100) for
    one target (default: the first). Index: level, query, answer; one column per method row."""
    df = _single_predictions(preds)
    df = df[df["set"] == split]
    target_index = int(df["target_index"].min()) if target_index is None else target_index
    df = df[df["target_index"] == target_index]
    before = df[df["Method"] == "Before"]
    known = before[before["rwku"] >= 100].sort_values(["level", "index"]).groupby("level").head(per_level)
    keys = list(zip(known["level"], known["index"]))
    picked = df[[k in set(keys) for k in zip(df["level"], df["index"])]]
    wide = picked.pivot_table(index=["level", "index"], columns="Method", values="prediction", aggfunc="first")
    wide = wide[_row_order(wide.columns)]
    text = known.set_index(["level", "index"])[["query", "answer"]]
    out = text.join(wide).reset_index().set_index(["level", "query", "answer"]).drop(columns="index")
    out.columns.name = "Method"
    return out


def scorer_sensitivity(preds: pd.DataFrame) -> pd.DataFrame:
    """How much the ROUGE-L implementation matters, per method row: probes scored, probes whose score
    differs between the official `rwku` scorer and Google's `rouge-score`, the mean absolute difference
    (points), and forget/neighbor 'All' under each scorer."""
    df = _single_predictions(preds)
    diff = (df["rwku"] - df["rouge-score"]).abs()
    g = df.assign(_diff=diff, _changed=diff > 1e-9).groupby("Method")
    out = pd.DataFrame({"probes": g.size(), "changed": g["_changed"].sum(), "mean abs diff": g["_diff"].mean()})
    for split in ("forget", "neighbor"):
        part = df[df["set"] == split].groupby(["Method", "target_index"])[["rwku", "rouge-score"]].mean()
        means = part.groupby("Method").mean()
        out[f"{split} All rwku"] = means["rwku"]
        out[f"{split} All rouge-score"] = means["rouge-score"]
    return out.loc[_row_order(out.index)]
