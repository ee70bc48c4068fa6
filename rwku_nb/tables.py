"""Table 1 of RWKU (single-target results) as a view of the results store."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from .evaluation import table1_columns
from .methods import METHODS
from .paper import (DATASHEET_UTILITY, PAPER_MODELS, PAPER_TABLE1_LLAMA3, PAPER_TABLE3, REPORTED_LLAMA3, paper_model,
                    paper_table1)
from .paths import atomic_write_text, figures_dir, shown
from .config import layer_window
from .jobs import SINGLE, Point
from .schema import UTILITY_LABELS, UTILITY_SETS

VARIANT_LABELS = {"none": "", "full": "Full", "lora": "LoRA"}

# Rows after the paper's: the newer baselines, then the seed-0 paper's methods.
EXTRA_ORDER = ["SimNPO Full", "SimNPO LoRA", "RMU Full", "RMU LoRA"]


def method_label(method: str, variant: str) -> str:
    """Row label as the paper writes it: 'Before', 'ICU', 'GA Full', 'NPO LoRA'."""
    label = METHODS[method].label if method in METHODS else method
    return f"{label} {VARIANT_LABELS.get(variant, variant)}".strip()


def _row_order(labels) -> list[str]:
    # The paper's row order; unknown labels after it, alphabetically.
    paper = list(PAPER_TABLE1_LLAMA3) + EXTRA_ORDER
    return sorted(labels, key=lambda x: (paper.index(x) if x in paper else len(paper), x))


def table1(rows: pd.DataFrame, preds: pd.DataFrame | None = None, scorer: str = "rwku") -> pd.DataFrame:
    """Paper Table 1 layout: per method row, mean over targets of each column (NaN where unmeasured).

    Only single-target results with the Full/LoRA variants (or none) count; curve points, batch-target
    and partial-layer runs have their own tables. With the per-probe predictions `preds`, the column
    ("Forget", "Full #") follows the averages: the per-item view of the seed-0 paper, the number of forget
    probes still answered fully (`scorer` recall 100) after unlearning, mean over targets.
    """
    df = _table1_rows(rows)
    out = _wide(df, lambda d: [method_label(m, v) for m, v in zip(d["method"], d["variant"])], "Method")
    out = out.loc[_row_order(out.index)]
    if preds is not None:
        out.insert(out.columns.get_loc(("Forget", "All")) + 1, FULL_COLUMN,
                   full_answers(preds, scorer)["full"].reindex(out.index))
    return out


# The MIA table: the means the official eval_mia.py prints (LOSS as NLL x 100, Zlib, Min-K%++ at k = 20%) on
# the forget (FM) and retain (RM) member sets, and the FM-vs-RM ROC AUC of each attack at k = 20%
# (../shared/PROTOCOL.md). Zlib is shown x 1000 and AUC in percent, so that one decimal keeps their digits.
MIA_COLUMNS = {
    ("FM", "LOSS"): ("mia_fm_loss", 1), ("FM", "Zlib x1000"): ("mia_fm_zlib", 1000),
    ("FM", "Min-K%++ 20%"): ("mia_fm_minkpp20", 1),
    ("RM", "LOSS"): ("mia_rm_loss", 1), ("RM", "Zlib x1000"): ("mia_rm_zlib", 1000),
    ("RM", "Min-K%++ 20%"): ("mia_rm_minkpp20", 1),
    ("AUC % (FM vs RM)", "LOSS"): ("mia_auc_loss", 100), ("AUC % (FM vs RM)", "Zlib"): ("mia_auc_zlib", 100),
    ("AUC % (FM vs RM)", "Min-K% 20%"): ("mia_auc_mink_0.2", 100),
    ("AUC % (FM vs RM)", "Min-K%++ 20%"): ("mia_auc_mink++_0.2", 100),
}


def dataset_statistics(targets) -> pd.DataFrame:
    """Paper Table 3 computed from the data present: per set, the targets that have it, its items and their
    average length in whitespace words (probes: the query; MIA sets: the text), beside the paper's counts
    for all 200 targets."""
    stems = {"Forget FB": "forget_level1", "Forget QA": "forget_level2", "Forget AA": "forget_level3",
             "Neighbor FB": "neighbor_level1", "Neighbor QA": "neighbor_level2", "MIA FM": "forget_mia",
             "MIA RM": "retain_mia"}
    out = {}
    for name, stem in stems.items():
        having = [t for t in targets if t.has(stem)]
        lengths = [len(r["text" if name.startswith("MIA") else "query"].split()) for t in having for r in t.rows(stem)]
        items, length = PAPER_TABLE3[name]
        out[name] = {("Here", "Targets"): len(having), ("Here", "Items"): len(lengths),
                     ("Here", "Avg. length"): sum(lengths) / len(lengths) if lengths else float("nan"),
                     ("Paper, 200 targets", "Items"): items, ("Paper, 200 targets", "Avg. length"): length}
    table = pd.DataFrame.from_dict(out, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "Set"
    return table


UTILITY_TEXT = {"mmlu": "question", "bbh": "question", "truthfulqa": "question", "triviaqa": "question",
                "fluency": "instruction"}


def utility_statistics(targets) -> pd.DataFrame:
    """The utility sets present, beside what the paper's datasheet and the official code use: per set, the
    targets with their own copy, the distinct contents among all targets' sets (a target without a copy reads
    another's), items per target and their average length in whitespace words (question or instruction), the
    datasheet's items per target, and the items the official evaluation scores (every row of the file)."""
    out = {}
    for name, label in UTILITY_LABELS.items():
        present = any(t.has(UTILITY_SETS[name]) for t in targets)
        sets = [t.utility(name) for t in targets] if present else []  # none anywhere: a row of zeros
        contents = {json.dumps(rows, sort_keys=True, default=str) for rows in sets}
        size = max((len(rows) for rows in sets), default=0)
        words = [len(str(r[UTILITY_TEXT[name]]).split()) for rows in sets[:1] for r in rows]
        out[label] = {("Here", "Targets with a copy"): sum(t.has(UTILITY_SETS[name], own=True) for t in targets),
                      ("Here", "Distinct sets"): len(contents),
                      ("Here", "Items per target"): size,  # the largest set when they differ (see Distinct sets)
                      ("Here", "Avg. length"): sum(words) / len(words) if words else float("nan"),
                      ("Paper datasheet", "Items per target"): DATASHEET_UTILITY[name],
                      ("Official code", "Items scored"): size}
    table = pd.DataFrame.from_dict(out, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "Set"
    return table


def mia_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every MIA of every Table 1 row: per method, the mean over targets of each MIA_COLUMNS metric (scaled as
    noted there). An AUC of 50 means forget and retain members look alike to the attack; unlearning that
    works pushes it below 50 (the forget members look less seen than the retain members)."""
    df = _table1_rows(rows)
    columns = pd.MultiIndex.from_tuples(MIA_COLUMNS)
    if not df.empty:
        df = df[df["metric"].isin([m for m, _ in MIA_COLUMNS.values()])]
    if df.empty:
        return pd.DataFrame(index=pd.Index([], name="Method"), columns=columns, dtype=float)
    labels = [method_label(m, v) for m, v in zip(df["method"], df["variant"])]
    wide = df.assign(_label=labels).pivot_table(index="_label", columns="metric", values="value", aggfunc="mean")
    out = pd.DataFrame(index=_row_order(wide.index), columns=columns, dtype=float)
    for col, (metric, scale) in MIA_COLUMNS.items():
        if metric in wide:
            out[col] = wide[metric] * scale
    out.index.name = "Method"
    return out


FULL_COLUMN = ("Forget", "Full #")


def full_answers(preds: pd.DataFrame, scorer: str = "rwku") -> pd.DataFrame:
    """Per Table 1 row: `full`, the number of forget probes (all levels) answered fully (recall 100) and
    `probes`, the number of forget probes, each the mean over targets."""
    if preds.empty:
        return pd.DataFrame(columns=["full", "probes"], index=pd.Index([], name="Method"), dtype=float)
    df = _single_predictions(preds)
    df = df[df["set"] == "forget"]
    per = (df.assign(full=df[scorer] >= 100.0).groupby(["Method", "target_index"])
           .agg(full=("full", "sum"), probes=("full", "size")))
    return per.groupby("Method").mean().astype(float)


def _single_predictions(preds: pd.DataFrame) -> pd.DataFrame:
    """Single-target Full/LoRA (or untrained) predictions, labelled with their Table 1 row."""
    df = preds[(preds["setting"] == SINGLE) & preds["variant"].isin(list(VARIANT_LABELS))]
    return df.assign(Method=[method_label(m, v) for m, v in zip(df["method"], df["variant"])])


def table1_ci(rows: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Percentile-bootstrap confidence intervals over targets for every Table 1 cell, as text
    'mean [low, high]': targets are resampled with replacement (seeded), each resample's mean taken."""
    df = _table1_rows(rows)
    means = table1(rows)
    out = pd.DataFrame(index=means.index, columns=means.columns, dtype=object)
    rng = np.random.default_rng(seed)
    labels = [method_label(m, v) for m, v in zip(df["method"], df["variant"])]
    by_cell = df.assign(_label=labels).groupby(["_label", "metric"])["value"]
    columns = table1_columns()
    for (label, metric), values in by_cell:
        col = next((c for c, m in columns.items() if m == metric), None)
        if col is None or label not in out.index:
            continue
        v = values.to_numpy(dtype=float)
        boot = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
        low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        out.loc[label, col] = f"{v.mean():.1f} [{low:.1f}, {high:.1f}]"
    return out


def _table1_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Single-target Full/LoRA (or untrained) results: what Table 1 averages."""
    if rows.empty:
        return rows
    return rows[(rows["setting"] == SINGLE) & rows["variant"].isin(list(VARIANT_LABELS))]


def batch_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Batch-target results (paper Fig. 5): per (method, number of targets unlearned at once), the mean
    over those targets of each probe and utility column."""
    df = rows[rows["setting"].map(lambda s: Point.parse(s).kind == "batch").astype(bool)]
    out = _wide(df, lambda d: list(zip([method_label(m, "") for m in d["method"]],
                                       [Point.parse(s).value for s in d["setting"]])), ["Method", "Targets"])
    return out.drop(columns=["MIA"], level=0, errors="ignore").sort_index()


def layer_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Partial-layer results (paper Fig. 7): per (method, trained layer window), mean over targets."""
    df = rows[(rows["setting"] == SINGLE) & rows["variant"].map(lambda v: layer_window(v) is not None).astype(bool)]
    windows = lambda d: [layer_window(v) for v in d["variant"]]  # noqa: E731
    out = _wide(df, lambda d: list(zip([method_label(m, "") for m in d["method"]],
                                       [f"{a}-{b - 1}" for a, b in windows(d)],
                                       [a for a, _ in windows(d)])), ["Method", "Layers", "_start"])
    out = out.sort_index(level=["Method", "_start"])
    return out.droplevel("_start").drop(columns=["MIA"], level=0, errors="ignore")


def curve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Trade-off curve points (paper Fig. 3): per (method, step 'epoch'/'alpha', epochs trained or RepE
    weight), the mean over targets of forget and neighbor 'All' and of each utility set (`curve_columns`). A trained method's last epoch is its
    Table 1 result."""
    df = rows[rows["variant"].isin(list(VARIANT_LABELS))]
    parsed = [Point.parse(s) for s in df["setting"]]
    curve = [p.kind in ("epoch", "alpha") for p in parsed]
    last = df.assign(_k=[p.kind if c else None for p, c in zip(parsed, curve)],
                     _x=[float(p.value) if c else float("nan") for p, c in zip(parsed, curve)])
    # A trained run's final epoch = one past its last stored epoch point: a curve run stores a point after
    # every epoch training goes on from, so a trained run without points trained one epoch (epochs: 1, or
    # SGA/TAU stopping after the first) -- when the rows come from a curve run at all.
    final = last[last["_k"] == "epoch"].groupby(["method", "variant"])["_x"].max().add(1)
    if not final.empty:
        trains = df["method"].map(lambda m: m in METHODS and METHODS[m].trains)
        trained = df[(df["setting"] == SINGLE) & trains]
        for key in set(zip(trained["method"], trained["variant"])) - set(final.index):
            final.loc[key] = 1
    points = last[last["_k"].notna()]
    ends = df[(df["setting"] == SINGLE)].merge(final.rename("_x").reset_index(), on=["method", "variant"])
    both = pd.concat([points, ends.assign(_k="epoch")], ignore_index=True)
    names = curve_columns()
    both = both[both["metric"].isin(list(names))]
    if both.empty:
        empty = pd.DataFrame(columns=["Method", "step", "value", *names.values()])
        return empty.set_index(["Method", "step", "value"])
    both["Method"] = [method_label(m, v) for m, v in zip(both["method"], both["variant"])]
    wide = both.pivot_table(index=["Method", "_k", "_x"], columns="metric", values="value", aggfunc="mean")
    wide = wide.reindex(columns=list(names)).rename(columns=names).reset_index()
    wide = wide.rename(columns={"_k": "step", "_x": "value"})
    return wide.set_index(["Method", "step", "value"])[list(names.values())]


def curve_columns() -> dict:
    """metric -> column of the trade-off table: forget and neighbor All, then the utility sets (paper Fig. 3
    plots neighbor, truthfulness, factuality and fluency against forgetting)."""
    return {metric: f"{group} {col}" for (group, col), metric in table1_columns().items()
            if (group != "MIA" and col == "All") or group == "Utility"}


def _wide(df: pd.DataFrame, labels, index) -> pd.DataFrame:
    """Mean over targets of each TABLE1 column, one row per label (each target counts once)."""
    metrics = table1_columns()
    columns = pd.MultiIndex.from_tuples(metrics)
    if df.empty:
        names = [index] if isinstance(index, str) else index
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=names) if len(names) > 1 else
                            pd.Index([], name=names[0]), columns=columns, dtype=float)
    df = df.assign(_label=labels(df))
    wide = df.pivot_table(index="_label", columns="metric", values="value", aggfunc="mean")
    out = pd.DataFrame(index=wide.index, columns=columns, dtype=float)
    for col, metric in metrics.items():
        if metric in wide:
            out[col] = wide[metric]
    if isinstance(index, str):
        out.index.name = index
    else:
        out.index = pd.MultiIndex.from_tuples(out.index, names=index)
    return out


def n_targets(rows: pd.DataFrame) -> pd.Series:
    """Number of targets behind each Table 1 row (the same rows `table1` averages)."""
    df = _table1_rows(rows)
    labels = [method_label(m, v) for m, v in zip(df["method"], df["variant"])]
    return df.assign(label=labels).groupby("label")["target_index"].nunique()


def to_markdown(table: pd.DataFrame, decimals: int = 1) -> str:
    """Markdown of a table, two-level columns flattened to 'Forget FB' etc."""
    flat = _flat(table).round(decimals)
    whole = [c for c in flat.columns if pd.api.types.is_integer_dtype(flat[c])]
    return flat.astype({c: object for c in whole}).to_markdown(floatfmt=f".{decimals}f") + "\n"  # counts stay whole


def _flat(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with two-level columns joined into one level ('Forget FB')."""
    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [f"{g} {c}" for g, c in flat.columns]
    return flat


def write_table(table: pd.DataFrame, name: str, caption: str, decimals: int = 1) -> list[str]:
    """Write `figures/<name>.csv` and `.md` (atomically); returns the two paths as shown to users.

    `caption` says what the numbers are about (model, profile, injected vs real-world knowledge): it
    heads the Markdown file and fills the CSV's first column, so neither file can lose it.
    """
    base = figures_dir() / name
    flat = _flat(table)
    flat.insert(0, "Setting", caption)
    atomic_write_text(base.with_suffix(".csv"), flat.round(decimals).to_csv(float_format=f"%.{decimals}f"))
    atomic_write_text(base.with_suffix(".md"), f"{caption}\n\n{to_markdown(table, decimals)}")
    return [shown(base.with_suffix(".csv")), shown(base.with_suffix(".md"))]


def knowledge_table(before: pd.DataFrame, model: str) -> pd.DataFrame:
    """What the model knows: its Before row per kind of knowledge (from `runner.before_rows`), beside
    the paper's LLaMA3-8B-Instruct Before row."""
    parts = {f"{model}, {kind}": table1(rows).loc["Before"] for kind, rows in before.groupby("knowledge", sort=False)}
    parts["Paper, LLaMA3-8B-Instruct, real-world knowledge"] = paper_table1().loc["Before"]
    out = pd.DataFrame(parts).T
    out.index.name = "Model"
    return out


def beside_paper(table: pd.DataFrame, label: str, model: str | None = None) -> pd.DataFrame:
    """This run's Table 1 stacked above the paper's rows for the same methods: those of `model` where the paper
    evaluated it (Table 1 LLaMA3, Table 2 Phi-3, Table 6 Before rows), else the LLaMA3-8B Table 1."""
    paper_label, rows = paper_model(model) or PAPER_MODELS[0][1:]
    paper = paper_table1(rows)
    paper = paper.loc[[m for m in table.index if m in paper.index]]
    parts = {label: table, paper_label: paper}
    reported = {name: row for name, row in REPORTED_LLAMA3.items()
                if rows is PAPER_TABLE1_LLAMA3 and any(m.startswith(name.split()[0] + " ") for m in table.index)}
    if reported:
        parts["Reported elsewhere, LLaMA3-8B-Instruct"] = \
            pd.DataFrame.from_dict(reported, orient="index").reindex(columns=table.columns)
    return pd.concat(parts, names=["Source", "Method"])


def for_writing(table: pd.DataFrame, label: str, model: str | None) -> pd.DataFrame:
    """What a written Table 1 file holds: this run's rows beside the paper's where the paper evaluated `model`
    (the same weights, so the numbers compare), else this run's rows alone."""
    return beside_paper(table, label, model) if paper_model(model) else table


# --- the seed-0 paper: per-sequence unlearning (notebook 07) ------------------------------------------

SELECTIVE_LABELS = {"ga_seq": "GA", "ta": "TA", "sga": "SGA", "tau": "TAU"}


def selective_table(runs: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """Per (method, variant, epoch) of `seed0.run_selective`'s rows: the phase, mean MA and EL_n (x100),
    how many forget sequences are still extractable (score above the unseen-text threshold) by MA and by
    EL, and the perplexities. Epoch 0 is the model before unlearning."""
    g = runs.groupby(["method", "variant", "epoch"], sort=False)
    out = g.agg(phase=("phase", "first"), MA=("ma", "mean"), EL=("el", "mean"),
                ppl_wikitext=("ppl_wikitext", "first"), ppl_lambada=("ppl_lambada", "first"),
                sequences=("seq", "size"))
    out["MA"] *= 100
    out["EL"] *= 100
    out.insert(3, "extractable (MA)", g["ma"].apply(lambda x: int((x > thresholds["ma"]).sum())))
    out.insert(4, "extractable (EL)", g["el"].apply(lambda x: int((x > thresholds["el"]).sum())))
    out = out.rename(columns={"ppl_wikitext": "PPL WikiText", "ppl_lambada": "PPL LAMBADA"})
    out.index = out.index.set_levels(out.index.levels[0].map(lambda m: SELECTIVE_LABELS.get(m, m)), level=0)
    out.index.names = ["Method", "Variant", "Epoch"]
    return out


def selective_final(table: pd.DataFrame) -> pd.DataFrame:
    """The model before unlearning ('Before', epoch 0) and the last epoch of every (method, variant) of
    `selective_table`, with the epoch it stopped at."""
    before = table.xs(0, level="Epoch").head(1).assign(Epoch=0, phase="")
    before.index = pd.MultiIndex.from_tuples([("Before", "")], names=["Method", "Variant"])
    last = table.groupby(level=[0, 1], sort=False).tail(1).reset_index(level="Epoch")
    out = pd.concat([before, last])
    return out[["Epoch"] + [c for c in out.columns if c != "Epoch"]]


def selective_data_table(data: pd.DataFrame) -> pd.DataFrame:
    """Per role (forget / unseen) of `seed0.selective_data`: how many sequences, and their MA (mean, min,
    max) and mean EL_n before unlearning, x100."""
    g = data.groupby("role", sort=False)
    out = pd.DataFrame({"sequences": g.size(), "MA mean": 100 * g["ma"].mean(), "MA min": 100 * g["ma"].min(),
                        "MA max": 100 * g["ma"].max(), "EL mean": 100 * g["el"].mean()})
    out.index.name = "Sequences"
    return out
