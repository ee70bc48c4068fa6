"""Figures, seaborn-styled; every figure is saved under figures/.

No backend is forced: Jupyter shows figures inline, and without a display matplotlib falls back to Agg.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .evaluation import UTILITY_COLUMNS
from .paths import figures_dir, shown
from .schema import UTILITY_LABELS


# One style per method in every figure: a colour per method family (the paper's methods, then the newer
# baselines and the seed-0 paper's), from tab20's strong shades first, so no two families share a colour;
# a marker and a line style per variant, so Full and LoRA of a method read as a pair.
FAMILIES = ("Before", "ICU", "RepE", "GA*", "GA", "DPO", "NPO", "RT", "SimNPO", "RMU", "SGA", "TAU", "TA")
_STRONG = sns.color_palette("tab20", 20)
_COLOURS = _STRONG[0::2] + _STRONG[1::2]
MARKERS = {"Full": "o", "LoRA": "^", "": "s"}
LINESTYLES = {"Full": "-", "LoRA": "--", "": "-"}


def method_style(label: str) -> dict:
    """Colour, marker and line style of a Table 1 row label ('GA Full', 'RepE', 'NPO LoRA'), the same in
    every figure; a label outside FAMILIES gets a colour after theirs, stable for that label."""
    label = str(label)
    family, _, variant = label.rpartition(" ") if label.endswith((" Full", " LoRA")) else (label, "", "")
    if family in FAMILIES:
        colour = _COLOURS[FAMILIES.index(family)]
    else:
        colour = _COLOURS[len(FAMILIES) + sum(map(ord, family)) % (len(_COLOURS) - len(FAMILIES))]
    if family == "Before":
        return {"color": "black", "marker": "*", "linestyle": "-"}
    return {"color": colour, "marker": MARKERS[variant], "linestyle": LINESTYLES[variant]}


def forget_vs_neighbor(table, title: str = ""):
    """Scatter of forget 'All' vs neighbor 'All' per method (lower-right = forgets and keeps)."""
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    x, y = table[("Forget", "All")], table[("Neighbor", "All")]
    for label, fx, ny in zip(table.index, x, y):
        st = method_style(label)
        before = st["marker"] == "*"  # drawn on top: unmoved methods sit exactly on it
        ax.scatter(fx, ny, s=110 if before else 60, color=st["color"], marker=st["marker"], label=label,
                   edgecolor="white" if before else "black", linewidth=0.5, zorder=4 if before else 2)
    ax.set_xlabel("Forget set, All (ROUGE-L recall x100, lower = more forgotten)")
    ax.set_ylabel("Neighbor set, All (higher = better kept)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=True)
    fig.tight_layout()
    return fig


def knowledge_bars(table, title: str = ""):
    """Bars per probe set and level (forget FB/QA/AA, neighbor FB/QA), one colour per row of
    `tables.knowledge_table`: what each model knows before any unlearning."""
    sns.set_theme(style="whitegrid", context="notebook")
    columns = [("Forget", "FB"), ("Forget", "QA"), ("Forget", "AA"), ("Neighbor", "FB"), ("Neighbor", "QA")]
    long = [{"probe": f"{g} {c}", "model": textwrap.fill(label, 24), "recall": table.loc[label, (g, c)]}
            for label in table.index for g, c in columns]
    fig, ax = plt.subplots(figsize=(8 + LEGEND_WIDTH, 4.5))
    sns.barplot(data=pd.DataFrame(long), x="probe", y="recall", hue="model", ax=ax, edgecolor="black", linewidth=0.5)
    for bars in ax.containers:
        _mark_zero_bars(ax, [b.get_x() + b.get_width() / 2 for b in bars], [b.get_height() for b in bars],
                        bars.patches[0].get_facecolor() if bars.patches else "black")
    ax.get_legend().remove()  # one legend right of the bars (as the other figures), never over them
    ax.set_xlabel("")
    ax.set_ylabel("ROUGE-L recall x100 (Before row)")
    ax.set_ylim(0, 100)
    _legend_right(fig, [ax], title)
    return fig


def _mark_zero_bars(ax, xs, values, color) -> None:
    """A zero-height bar draws nothing: label each with '0' just above the axis, so a measured zero is not
    read as a missing bar (NaN bars stay empty)."""
    for x, v in zip(xs, values):
        if v == 0:
            ax.annotate("0", (x, 0), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                        fontsize=6, color=color)


# What each Table 1 column measures, for panel titles and axes (units: rwku_nb.utility, rwku_nb.metrics).
PANEL_NAMES = {("Forget", "FB"): "Forget FB", ("Forget", "QA"): "Forget QA", ("Forget", "AA"): "Forget AA",
               ("Forget", "All"): "Forget All", ("Neighbor", "FB"): "Neighbor FB", ("Neighbor", "QA"): "Neighbor QA",
               ("Neighbor", "All"): "Neighbor All",
               **{column: UTILITY_LABELS[metric.removeprefix("utility_")] for metric, column in UTILITY_COLUMNS.items()}}
UNITS = {"Forget": "ROUGE-L recall x100", "Neighbor": "ROUGE-L recall x100", "Gen": "accuracy x100",
         "Rea": "exact match x100", "Tru": "MC1 accuracy x100", "Fac": "F1 x100", "Flu": "n-gram entropy x100"}
# The paper's panels: Fig. 3 (y against forget All), Fig. 5 (batch-target) and Fig. 7 (partial-layer).
FIG3_PANELS = [("Neighbor", "All"), ("Utility", "Tru"), ("Utility", "Fac"), ("Utility", "Flu")]
FIG5_PANELS = [("Forget", c) for c in ("FB", "QA", "AA", "All")] + [("Neighbor", c) for c in ("FB", "QA", "All")] + \
              [("Utility", c) for c in ("Gen", "Rea", "Tru", "Fac", "Flu")]
FIG7_PANELS = [("Forget", c) for c in ("FB", "QA", "AA", "All")] + [("Neighbor", "All")] + \
              [("Utility", c) for c in ("Rea", "Tru", "Fac")]
NOT_MEASURED = "not measured in this run\n(the profile's `utility` leaves it out)"


def _family_order(label: str) -> tuple:
    family = str(label).rpartition(" ")[0] if str(label).endswith((" Full", " LoRA")) else str(label)
    return (FAMILIES.index(family) if family in FAMILIES else len(FAMILIES), str(label))


def _unit(column: tuple) -> str:
    return UNITS.get(column[0], UNITS.get(column[1], ""))


def _not_measured(ax) -> None:
    """An honest empty panel: says why it holds no data."""
    ax.text(0.5, 0.5, NOT_MEASURED, ha="center", va="center", fontsize=8, color="dimgray", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


LEGEND_WIDTH = 1.7  # inches right of the panels for the shared legend


def _legend_right(fig, axes, title: str) -> None:
    """One legend for all panels, in a strip right of them (inside the saved image), with each label once;
    the panels and the wrapped title are laid out in the rest."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    right = 1 - LEGEND_WIDTH / fig.get_figwidth()
    fig.legend(list(seen.values()), list(seen), fontsize=7, loc="center left", bbox_to_anchor=(right, 0.5),
               frameon=True)
    fig.suptitle(textwrap.fill(title, 140), fontsize=9)
    fig.tight_layout(rect=(0, 0, right, 1))


def tradeoff(curve, before=None, title: str = "", panels=FIG3_PANELS):
    """Paper Fig. 3: forget 'All' (x) against neighbor 'All', truthfulness, factuality and fluency (one panel
    each) as training goes on (epochs) or RepE's weight grows, one line per method from `tables.curve_table`,
    starting at the Before row (a Table 1 row) if given."""
    sns.set_theme(style="whitegrid", context="notebook")
    from .tables import _row_order

    curve = curve.reset_index()
    groups = dict(list(curve.groupby("Method", sort=False)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + LEGEND_WIDTH, 3.8), squeeze=False)
    axes = list(axes[0])
    for ax, column in zip(axes, panels):
        name = " ".join(column)
        if name not in curve or curve[name].isna().all():
            _not_measured(ax)
        else:
            for label in _row_order(groups):
                points = groups[label].sort_values("value")
                x, y = list(points["Forget All"]), list(points[name])
                if before is not None:
                    x, y = [before[("Forget", "All")]] + x, [before[column]] + y
                ax.plot(x, y, label=label, markersize=4, **method_style(label))
            if before is not None:
                ax.scatter([before[("Forget", "All")]], [before[column]], s=90, marker="*", color="black",
                           label="Before", zorder=3)
            ax.set_xlabel("Forget All (lower = more forgotten)", fontsize=8)
            ax.set_ylabel(_unit(column), fontsize=8)
        ax.set_title(PANEL_NAMES[column], fontsize=9)
        ax.tick_params(labelsize=7)
    _legend_right(fig, axes, title)
    return fig


def by_group(table, level: str, kind: str = "line", title: str = "", panels=None, columns: int = 4):
    """One panel per Table 1 column of `panels` against one index level of `table`, one line (`kind`
    "line") or bar group ("bar") per method: paper Fig. 5 (number of targets, `FIG5_PANELS`, the default for
    "line") and Fig. 7 (trained layers, `FIG7_PANELS`, the default for "bar")."""
    sns.set_theme(style="whitegrid", context="notebook")
    panels = panels or (FIG5_PANELS if kind == "line" else FIG7_PANELS)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns + LEGEND_WIDTH, 2.9 * rows), squeeze=False)
    axes = list(axes.flat)
    flat = table.reset_index()
    steps = list(dict.fromkeys(flat[level]))
    methods = sorted(dict.fromkeys(flat["Method"]), key=_family_order)  # the paper's order: ICU, RepE, GA, DPO, ...
    width = 0.8 / max(1, len(methods))
    for ax, column in zip(axes, panels):
        values = flat[column] if column in flat else None
        if values is None or values.isna().all():
            _not_measured(ax)
        else:
            for i, method in enumerate(methods):
                part = flat[flat["Method"] == method].set_index(level)[column].reindex(steps)
                style = method_style(method)
                if kind == "line":  # later methods thinner, on top: two methods with equal values both show
                    wider = (len(methods) - 1 - i) / max(1, len(methods) - 1)
                    ax.plot([str(s) for s in steps], list(part), label=method, markersize=4 + 3 * wider,
                            linewidth=1.5 + 1.5 * wider, **style)
                else:
                    xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(steps))]
                    ax.bar(xs, list(part), width=width, color=style["color"], edgecolor="black", linewidth=0.5,
                           label=method)
                    _mark_zero_bars(ax, xs, list(part), style["color"])
            if kind == "bar":
                ax.set_xticks(range(len(steps)), [str(s) for s in steps])
            ax.set_xlabel(level, fontsize=8)
            ax.set_ylabel(_unit(column), fontsize=8)
            if column[0] != "Utility" or column[1] != "Flu":  # a line at 0 stays clear of the axis (bars: labelled)
                ax.set_ylim(*((-4, 104) if kind == "line" else (0, 100)))
        ax.set_title(PANEL_NAMES[column], fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    _legend_right(fig, axes, title)
    return fig


def memorization_scatter(table, title: str = ""):
    """Paper Fig. 1: exact memorization (EM x100) against NLL per token, one point per kind of text and model
    (from `memorization.memorization_table`): a colour per model, a marker per kind (named in the legend)."""
    sns.set_theme(style="whitegrid", context="notebook")
    long = table.reset_index()
    models = list(dict.fromkeys(long["model"]))
    kinds = list(dict.fromkeys(long["kind"]))
    colours = dict(zip(models, sns.color_palette("colorblind", max(1, len(models)))))
    markers = dict(zip(kinds, "osD^vP*X"))
    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    for _, row in long.iterrows():
        ax.scatter(row["NLL"], row["EM"], s=70, color=colours[row["model"]], marker=markers[row["kind"]],
                   edgecolor="black", linewidth=0.5, label=f"{row['model']}: {row['kind']}")
    ax.set_xlabel("NLL per token (lower = more predictable)")
    ax.set_ylabel("Exact memorization x100 (higher = memorized)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=True)
    fig.tight_layout()
    return fig


def heatmap(table, title: str = "", label: str = "ROUGE-L recall x100", center=None):
    """Annotated heatmap of a method x column table (paper Fig. 4: forget score per attack type);
    `center` (e.g. 0 for changes) switches to a diverging palette."""
    sns.set_theme(style="white", context="notebook")
    fig, ax = plt.subplots(figsize=(1.0 * len(table.columns) + 3, 0.45 * len(table) + 2))
    cmap = "RdBu_r" if center is not None else "viridis"
    sns.heatmap(table.astype(float), annot=True, fmt=".0f", cmap=cmap, center=center, ax=ax,
                cbar_kws={"label": label}, linewidths=0.5, annot_kws={"fontsize": 8})
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    ax.set_title(textwrap.fill(title, 70), fontsize=10)  # a narrow heatmap would clip a one-line title
    fig.tight_layout()
    return fig


def save(fig, name: str) -> str:
    """Save a figure as figures/<name>.png (fixed dpi and metadata, so reruns are byte-stable)."""
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=120, metadata={"Software": None})
    return shown(path)


def selective_curves(runs: pd.DataFrame, table: pd.DataFrame, thresholds: dict, title: str = ""):
    """The seed-0 paper's point, one panel per method: every forget sequence's MA per epoch (thin lines),
    their mean (thick) and the unseen-text threshold (dashed); the title counts the sequences still above
    it at the end. The mean can cross the threshold while some sequences stay extractable."""
    from .tables import SELECTIVE_LABELS

    sns.set_theme(style="whitegrid", context="notebook")
    keys = list(dict.fromkeys(zip(runs["method"], runs["variant"])))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.8), sharey=True, squeeze=False)
    for ax, (method, variant) in zip(axes[0], keys):
        df = runs[(runs["method"] == method) & (runs["variant"] == variant)]
        wide = df.pivot(index="epoch", columns="seq", values="ma") * 100
        ax.plot(wide.index, wide.to_numpy(), color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(wide.index, wide.mean(axis=1), color="black", linewidth=2.2, label="mean MA")
        ax.axhline(100 * thresholds["ma"], color="tab:red", linestyle="--", label="threshold (unseen text)")
        label = SELECTIVE_LABELS.get(method, method)
        left = int(table.loc[(label, variant)]["extractable (MA)"].iloc[-1])
        ax.set_title(f"{label} {variant}: {left} of {wide.shape[1]} still above", fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].set_ylabel("memorization accuracy MA (x100)")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def relearning(points: pd.DataFrame, before: float | None = None, title: str = ""):
    """Forget All against relearning steps, one line per method, one panel per relearning source, and a last
    panel with the quantized models (from `robustness.points`); the dashed line is the model before unlearning."""
    from .robustness import SOURCE_LABELS

    sns.set_theme(style="whitegrid", context="notebook")
    forget = points[points["metric"] == "forget_all"]
    from .tables import _row_order

    methods = _row_order(dict.fromkeys(forget["Method"]))
    sources = list(dict.fromkeys(forget.loc[forget["attack"] == "relearn", "source"]))
    fig, axes = plt.subplots(1, len(sources) + 1, figsize=(4.2 * (len(sources) + 1), 4.2), sharey=True, squeeze=False)
    none = forget[forget["attack"] == "none"].set_index("Method")["value"]
    for ax, source in zip(axes[0], sources):
        for method in methods:
            part = forget[(forget["Method"] == method) & (forget["source"] == source)].sort_values("amount")
            ax.plot([0] + list(part["amount"]), [none[method]] + list(part["value"]), label=method,
                    **method_style(method))
        ax.set_title(SOURCE_LABELS.get(source, source), fontsize=10)
        ax.set_xlabel("relearning steps")
    quant = forget[forget["attack"] == "quant"]
    bits = sorted(quant["amount"].unique(), reverse=True)
    ticks = ["none"] + [f"{b}-bit" for b in bits]
    ax = axes[0][-1]
    for method in methods:
        values = [none[method]] + [quant[(quant["Method"] == method) & (quant["amount"] == b)]["value"].mean()
                                   for b in bits]
        ax.plot(range(len(ticks)), values, label=method, **method_style(method))
    ax.set_xticks(range(len(ticks)), ticks)
    ax.set_title("Quantized weights (round-to-nearest)", fontsize=10)
    ax.set_xlabel("weight precision")
    for ax in axes[0]:
        if before is not None:
            ax.axhline(before, color="black", linestyle="--", linewidth=1, label="Before unlearning")
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("Forget set, All (ROUGE-L recall x100)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=True)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
