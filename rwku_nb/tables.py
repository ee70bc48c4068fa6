"""Table 1 of RWKU (single-target results) as a view of the results store."""
from __future__ import annotations

import numpy as np
import pandas as pd

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


def method_label(method: str, variant: str) -> str:
    """Row label as the paper writes it: 'Before', 'ICU', 'GA Full', 'NPO LoRA'."""
    label = METHODS[method].label if method in METHODS else method
    return f"{label} {VARIANT_LABELS.get(variant, variant)}".strip()


def _row_order(labels) -> list[str]:
    # The paper's row order; unknown labels after it, alphabetically.
    paper = list(PAPER_TABLE1_LLAMA3)
    return sorted(labels, key=lambda x: (paper.index(x) if x in paper else len(paper), x))


def table1(rows: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 1 layout: per method row, mean over targets of each column (NaN where unmeasured).

    Only single-target results with the Full/LoRA variants (or none) count; curve points, batch-target
    and partial-layer runs have their own tables.
    """
    df = _table1_rows(rows)
    out = _wide(df, lambda d: [method_label(m, v) for m, v in zip(d["method"], d["variant"])], "Method")
    return out.loc[_row_order(out.index)]


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
    return out.drop(columns="MIA", level=0, errors="ignore").sort_index()


def layer_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Partial-layer results (paper Fig. 7): per (method, trained layer window), mean over targets."""
    df = rows[(rows["setting"] == SINGLE) & rows["variant"].str.startswith("layers-")]
    windows = lambda d: [tuple(int(x) for x in v.split("-")[1:]) for v in d["variant"]]  # noqa: E731
    out = _wide(df, lambda d: list(zip([method_label(m, "") for m in d["method"]],
                                       [f"{a}-{b - 1}" for a, b in windows(d)],
                                       [a for a, _ in windows(d)])), ["Method", "Layers", "_start"])
    out = out.sort_index(level=["Method", "_start"])
    return out.droplevel("_start").drop(columns="MIA", level=0, errors="ignore")


def curve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Trade-off curve points (paper Fig. 3): per (method, step 'epoch'/'alpha', epochs trained or RepE
    weight), the mean forget and neighbor 'All' over targets. A trained method's last epoch is its
    Table 1 result."""
    df = rows[rows["variant"].isin(list(VARIANT_LABELS))]
    steps = df["setting"].str.extract(r"^(epoch|alpha)-(.+)$")
    last = df.assign(_k=steps[0], _x=pd.to_numeric(steps[1]))
    # A trained run's final epoch = one past its last stored epoch point (epochs - 1 points are stored).
    final = last[last["_k"] == "epoch"].groupby(["method", "variant"])["_x"].max().add(1)
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


def paper_table1() -> pd.DataFrame:
    """The paper's LLaMA3-8B-Instruct Table 1 in the same layout as `table1`."""
    df = pd.DataFrame.from_dict(PAPER_TABLE1_LLAMA3, orient="index",
                                columns=pd.MultiIndex.from_tuples(TABLE1_COLUMNS))
    df.index.name = "Method"
    return df


def n_targets(rows: pd.DataFrame) -> pd.Series:
    """Number of targets behind each Table 1 row (the same rows `table1` averages)."""
    df = _table1_rows(rows)
    labels = [method_label(m, v) for m, v in zip(df["method"], df["variant"])]
    return df.assign(label=labels).groupby("label")["target_index"].nunique()


def to_markdown(table: pd.DataFrame, decimals: int = 1) -> str:
    """Markdown of a table, two-level columns flattened to 'Forget FB' etc."""
    return _flat(table).round(decimals).to_markdown(floatfmt=f".{decimals}f") + "\n"


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


def beside_paper(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """This run's Table 1 stacked above the paper's LLaMA3-8B rows for the same methods."""
    paper = paper_table1()
    paper = paper.loc[[m for m in table.index if m in paper.index]]
    return pd.concat({label: table, "Paper, LLaMA3-8B-Instruct": paper}, names=["Source", "Method"])
