"""Table 1 of RWKU (single-target results) as a view of the results store."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .data import AA_TYPES, aa_type
from .methods import METHODS
from .paths import atomic_write_text, figures_dir, shown
from .results import SINGLE

# (group, column) -> metric name in the results store.
TABLE1_COLUMNS = {
    ("Forget", "FB"): "forget_fb", ("Forget", "QA"): "forget_qa", ("Forget", "AA"): "forget_aa",
    ("Forget", "All"): "forget_all",
    ("Neighbor", "FB"): "neighbor_fb", ("Neighbor", "QA"): "neighbor_qa", ("Neighbor", "All"): "neighbor_all",
    ("MIA", "FM"): "mia_fm_loss", ("MIA", "RM"): "mia_rm_loss",
    ("Utility", "Gen"): "utility_mmlu", ("Utility", "Rea"): "utility_bbh", ("Utility", "Tru"): "utility_truthfulqa",
    ("Utility", "Fac"): "utility_triviaqa", ("Utility", "Flu"): "utility_fluency",
}
VARIANT_LABELS = {"none": "", "full": "Full", "lora": "LoRA"}

# Paper Table 1, LLaMA3-8B-Instruct, mean over 100 targets (Jin et al. 2024; ../shared/PROTOCOL.md).
# Forget FB QA AA All | Neighbor FB QA All | MIA FM RM (NLL x 100) | Utility Gen (MMLU) Rea (BBH)
# Tru (TruthfulQA MC1) Fac (TriviaQA F1) Flu (AlpacaEval n-gram entropy x 100).
PAPER_TABLE1_LLAMA3 = {
    "Before": [85.9, 76.4, 77.7, 79.6, 95.6, 85.3, 90.7, 226.7, 230.4, 65.7, 42.3, 36.8, 53.5, 705.8],
    "ICU": [26.2, 1.9, 10.3, 12.8, 65.0, 46.5, 55.7, 247.1, 258.4, 63.6, 39.3, 36.4, 48.2, 705.0],
    "RepE": [29.8, 33.6, 37.8, 34.8, 46.2, 38.8, 42.6, 292.0, 290.0, 64.8, 26.3, 37.6, 17.9, 703.7],
    "GA* Full": [40.7, 36.5, 43.7, 41.4, 68.6, 68.6, 68.1, 1640.9, 766.2, 65.5, 39.7, 37.8, 41.9, 692.4],
    "GA* LoRA": [70.3, 65.6, 67.8, 68.2, 80.6, 75.5, 77.5, 879.5, 665.1, 64.0, 37.8, 37.3, 43.8, 711.3],
    "GA Full": [39.1, 31.6, 46.7, 41.9, 84.6, 73.6, 79.0, 258.6, 231.0, 64.9, 42.0, 35.9, 52.5, 705.1],
    "GA LoRA": [67.0, 53.2, 61.8, 61.3, 90.1, 80.4, 85.3, 224.1, 221.6, 64.7, 41.5, 36.6, 52.8, 697.3],
    "DPO Full": [46.3, 38.5, 41.6, 41.9, 59.2, 51.3, 55.2, 243.6, 240.8, 64.1, 42.0, 31.5, 25.8, 725.9],
    "DPO LoRA": [75.3, 65.4, 68.6, 69.5, 90.0, 81.5, 85.6, 228.0, 231.2, 65.6, 42.0, 34.5, 55.5, 702.7],
    "NPO Full": [33.4, 21.0, 24.8, 26.2, 76.0, 69.9, 72.6, 278.9, 263.2, 64.8, 41.5, 34.9, 41.2, 712.2],
    "NPO LoRA": [75.1, 64.3, 69.0, 69.7, 91.3, 82.2, 86.7, 225.1, 227.0, 64.9, 41.7, 36.0, 54.0, 707.3],
    "RT Full": [72.7, 13.4, 22.8, 33.1, 86.9, 45.6, 67.4, 222.7, 226.6, 65.4, 41.4, 34.9, 59.3, 588.1],
    "RT LoRA": [85.4, 49.6, 53.2, 60.5, 87.3, 74.1, 81.9, 226.0, 223.9, 64.5, 41.2, 33.6, 58.2, 667.7],
}


# Paper Table 2, Phi-3-mini-4k-instruct (the paper has no RepE, NPO LoRA or RT LoRA rows), and Table 6's
# Before rows of two more models (../shared/PROTOCOL.md); columns as Table 1. Table 6 prints LLaMA3's Before
# Tru as 37.5 where Table 1 has 36.8; the Table 1 value is used for LLaMA3.
PAPER_TABLE2_PHI3 = {
    "Before": [47.1, 47.4, 55.8, 51.8, 56.2, 61.4, 58.3, 205.6, 207.5, 64.4, 39.5, 46.4, 15.1, 705.8],
    "ICU": [45.2, 34.6, 32.2, 36.0, 52.9, 56.1, 54.0, 237.0, 252.7, 63.9, 41.3, 46.2, 13.5, 712.7],
    "GA* Full": [37.1, 37.9, 46.4, 42.2, 51.8, 59.2, 54.6, 642.0, 376.9, 64.4, 38.5, 45.9, 15.1, 703.0],
    "GA* LoRA": [46.2, 47.5, 55.8, 51.6, 55.1, 61.2, 57.4, 231.8, 226.3, 64.4, 39.3, 46.0, 15.1, 702.1],
    "GA Full": [17.8, 14.3, 26.3, 21.6, 49.7, 51.7, 50.2, 294.8, 223.5, 64.3, 38.7, 46.6, 15.4, 697.0],
    "GA LoRA": [40.5, 37.8, 49.5, 44.8, 55.2, 60.1, 56.7, 207.0, 207.3, 64.2, 39.7, 46.4, 15.0, 698.9],
    "DPO Full": [25.0, 19.1, 29.9, 26.6, 41.4, 39.6, 40.1, 212.8, 201.1, 63.0, 41.6, 45.1, 15.1, 704.3],
    "DPO LoRA": [44.1, 45.6, 54.9, 50.3, 56.2, 60.5, 57.7, 213.6, 213.5, 64.3, 40.2, 46.5, 15.3, 700.8],
    "NPO Full": [22.5, 16.9, 27.3, 23.8, 50.5, 53.6, 51.3, 216.6, 207.2, 64.2, 39.8, 46.3, 15.3, 691.5],
    "RT Full": [47.6, 46.6, 55.4, 51.7, 57.2, 61.5, 58.8, 203.2, 205.5, 64.1, 40.7, 47.5, 15.4, 693.7],
}
PAPER_TABLE6_MISTRAL = {"Before": [64.0, 52.1, 57.8, 58.2, 74.0, 61.9, 68.4, 190.8, 195.3, 57.1, 31.7, 54.4, 20.0, 698.9]}
PAPER_TABLE6_LLAMA2 = {"Before": [51.8, 46.9, 57.5, 53.8, 63.7, 64.6, 64.1, 202.7, 207.2, 42.8, 26.9, 30.4, 41.5, 704.2]}
# The paper's rows per model it evaluated: (hub id, label, rows).
PAPER_MODELS = (
    ("meta-llama/Meta-Llama-3-8B-Instruct", "Paper, LLaMA3-8B-Instruct", PAPER_TABLE1_LLAMA3),
    ("microsoft/Phi-3-mini-4k-instruct", "Paper, Phi-3-mini-4k-instruct (Table 2)", PAPER_TABLE2_PHI3),
    ("mistralai/Mistral-7B-Instruct-v0.2", "Paper, Mistral-7B-Instruct-v0.2 (Table 6)", PAPER_TABLE6_MISTRAL),
    ("meta-llama/Llama-2-7b-chat-hf", "Paper, LLaMA2-7B-Chat (Table 6)", PAPER_TABLE6_LLAMA2),
)


# Reported on RWKU with LLaMA3-8B-Instruct outside the paper (variant not stated): RMU, forget All 24.1 and
# neighbor All 73.8 (HongbangYuan/RobustUnlearning, README). Shown beside the paper's rows where RMU runs.
REPORTED_LLAMA3 = {"RMU (RobustUnlearning)": {("Forget", "All"): 24.1, ("Neighbor", "All"): 73.8}}
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


# Paper Table 3 (all 200 targets; ../shared/PROTOCOL.md): items and average length per set. The paper does not
# say in what unit lengths are counted; `dataset_statistics` counts whitespace words.
PAPER_TABLE3 = {"Forget FB": (3268, 12.7), "Forget QA": (2879, 11.1), "Forget AA": (6984, 19.5),
                "Neighbor FB": (5846, 14.6), "Neighbor QA": (5533, 10.5), "MIA FM": (6198, 139.9),
                "MIA RM": (7487, 131.9)}


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


def table1_ci(rows: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Percentile-bootstrap confidence intervals over targets for every Table 1 cell, as text
    'mean [low, high]': targets are resampled with replacement (seeded), each resample's mean taken."""
    df = _table1_rows(rows)
    means = table1(rows)
    out = pd.DataFrame(index=means.index, columns=means.columns, dtype=object)
    rng = np.random.default_rng(seed)
    labels = [method_label(m, v) for m, v in zip(df["method"], df["variant"])]
    by_cell = df.assign(_label=labels).groupby(["_label", "metric"])["value"]
    for (label, metric), values in by_cell:
        col = next((c for c, m in TABLE1_COLUMNS.items() if m == metric), None)
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
    over those targets of each probe column."""
    df = rows[rows["setting"].str.startswith("batch-")]
    out = _wide(df, lambda d: list(zip([method_label(m, "") for m in d["method"]],
                                       d["setting"].str.removeprefix("batch-").astype(int))), ["Method", "Targets"])
    return out.drop(columns=["MIA", "Utility"], level=0, errors="ignore").sort_index()


def layer_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Partial-layer results (paper Fig. 7): per (method, trained layer window), mean over targets."""
    df = rows[(rows["setting"] == SINGLE) & rows["variant"].str.startswith("layers-")]
    windows = lambda d: [tuple(int(x) for x in v.split("-")[1:]) for v in d["variant"]]  # noqa: E731
    out = _wide(df, lambda d: list(zip([method_label(m, "") for m in d["method"]],
                                       [f"{a}-{b - 1}" for a, b in windows(d)],
                                       [a for a, _ in windows(d)])), ["Method", "Layers", "_start"])
    out = out.sort_index(level=["Method", "_start"])
    return out.droplevel("_start").drop(columns=["MIA", "Utility"], level=0, errors="ignore")


def curve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Trade-off curve points (paper Fig. 3): per (method, step 'epoch'/'alpha', epochs trained or RepE
    weight), the mean forget and neighbor 'All' over targets. A trained method's last epoch is its
    Table 1 result."""
    df = rows[rows["variant"].isin(list(VARIANT_LABELS))]
    steps = df["setting"].str.extract(r"^(epoch|alpha)-(.+)$")
    last = df.assign(_k=steps[0], _x=pd.to_numeric(steps[1]))
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
    both = both[both["metric"].isin(["forget_all", "neighbor_all"])]
    if both.empty:
        empty = pd.DataFrame(columns=["Method", "step", "value", "Forget All", "Neighbor All"])
        return empty.set_index(["Method", "step", "value"])
    both["Method"] = [method_label(m, v) for m, v in zip(both["method"], both["variant"])]
    wide = both.pivot_table(index=["Method", "_k", "_x"], columns="metric", values="value", aggfunc="mean")
    wide = wide.rename(columns={"forget_all": "Forget All", "neighbor_all": "Neighbor All"}).reset_index()
    wide = wide.rename(columns={"_k": "step", "_x": "value"})
    return wide.set_index(["Method", "step", "value"])[["Forget All", "Neighbor All"]]


def _wide(df: pd.DataFrame, labels, index) -> pd.DataFrame:
    """Mean over targets of each TABLE1 column, one row per label (each target counts once)."""
    columns = pd.MultiIndex.from_tuples(TABLE1_COLUMNS)
    if df.empty:
        names = [index] if isinstance(index, str) else index
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=names) if len(names) > 1 else
                            pd.Index([], name=names[0]), columns=columns, dtype=float)
    df = df.assign(_label=labels(df))
    wide = df.pivot_table(index="_label", columns="metric", values="value", aggfunc="mean")
    out = pd.DataFrame(index=wide.index, columns=columns, dtype=float)
    for col, metric in TABLE1_COLUMNS.items():
        if metric in wide:
            out[col] = wide[metric]
    if isinstance(index, str):
        out.index.name = index
    else:
        out.index = pd.MultiIndex.from_tuples(out.index, names=index)
    return out


def paper_table1(rows: dict | None = None) -> pd.DataFrame:
    """The paper's LLaMA3-8B-Instruct Table 1 (or other `rows` of the paper) in the same layout as `table1`."""
    df = pd.DataFrame.from_dict(PAPER_TABLE1_LLAMA3 if rows is None else rows, orient="index",
                                columns=pd.MultiIndex.from_tuples(TABLE1_COLUMNS))
    df.index.name = "Method"
    return df


def paper_model(model: str | None) -> tuple[str, dict] | None:
    """(label, rows) of the paper's numbers for `model` (a hub id, case-insensitive), or None when the paper
    did not evaluate it."""
    for hub_id, label, rows in PAPER_MODELS:
        if model is not None and str(model).lower() == hub_id.lower():
            return label, rows
    return None


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


# --- per-probe views: attacks (paper Fig. 4), case study, scorer sensitivity -------------------------

# A prediction counts as a refusal when it says it does not know or will not answer (rwku_nb's own
# phrase list: the paper's case study describes refusals but gives no rule).
REFUSAL_RE = re.compile(
    r"\b(i (do not|don't|can ?not|can't|am not able|'m not able|have no|am unable|'m unable)|i'm sorry|i am sorry|"
    r"i apologi[sz]e|no (idea|information|knowledge)|not (sure|familiar|aware)|unable to|"
    r"not something i know)\b", re.IGNORECASE)
BEHAVIOURS = ("correct", "partial", "wrong", "refusal", "empty")


def _single_predictions(preds: pd.DataFrame) -> pd.DataFrame:
    """Single-target Full/LoRA (or untrained) predictions, labelled with their Table 1 row."""
    df = preds[(preds["setting"] == SINGLE) & preds["variant"].isin(list(VARIANT_LABELS))]
    return df.assign(Method=[method_label(m, v) for m, v in zip(df["method"], df["variant"])])


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
