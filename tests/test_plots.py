"""Figures read at a glance: one style per method in every figure (no two methods share a colour; Full and
LoRA of a method share it and differ in marker and line), and each plotting function draws every row."""
import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from rwku_nb import plots  # noqa: E402

LABELS = ["Before", "ICU", "RepE", "GA* Full", "GA* LoRA", "GA Full", "GA LoRA", "DPO Full", "DPO LoRA", "NPO Full",
          "NPO LoRA", "RT Full", "RT LoRA", "SimNPO Full", "SimNPO LoRA", "RMU Full", "RMU LoRA", "SGA Full",
          "SGA LoRA", "TAU Full", "TAU LoRA"]


def test_one_style_per_method_everywhere():
    styles = {label: plots.method_style(label) for label in LABELS}
    families = {}
    for label, st in styles.items():
        families.setdefault(label.rsplit(" ", 1)[0] if label.endswith(("Full", "LoRA")) else label, []).append(st)
    colours = [tuple(sts[0]["color"]) if not isinstance(sts[0]["color"], str) else sts[0]["color"]
               for sts in families.values()]
    assert len(set(colours)) == len(families) == 12  # every family its own colour
    for sts in families.values():
        assert len({str(s["color"]) for s in sts}) == 1  # Full and LoRA: one colour ...
        assert len({(s["marker"], s["linestyle"]) for s in sts}) == len(sts)  # ... told apart by marker and line
    assert plots.method_style("GA Full") == plots.method_style("GA Full")
    assert plots.method_style("My method Full")["marker"] == "o"  # an unknown method still gets a style


def test_the_scatter_draws_every_row_in_its_style():
    table = pd.DataFrame({("Forget", "All"): range(len(LABELS)), ("Neighbor", "All"): range(len(LABELS))},
                         index=pd.Index(LABELS, name="Method"))
    fig = plots.forget_vs_neighbor(table, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == LABELS
    by_label = dict(zip(LABELS, ax.collections))
    assert tuple(by_label["NPO LoRA"].get_facecolor()[0][:3]) == tuple(plots.method_style("NPO LoRA")["color"])


def _panel_titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]


def _measured(ax):
    return bool(ax.lines or ax.patches or ax.collections)


def test_fig3_has_its_four_panels_and_says_which_are_unmeasured():
    rows = [("GA Full", "epoch", 1, 50.0, 80.0, 30.0, float("nan")), ("GA Full", "epoch", 2, 40.0, 70.0, 25.0, float("nan")),
            ("RepE", "alpha", 0.5, 55.0, 75.0, 35.0, float("nan"))]
    curve = pd.DataFrame([{"Method": m, "step": k, "value": v, "Forget All": f, "Neighbor All": n, "Utility Tru": t,
                           "Utility Fac": fac, "Utility Flu": float("nan")} for m, k, v, f, n, t, fac in rows])
    before = pd.Series({("Forget", "All"): 60.0, ("Neighbor", "All"): 90.0, ("Utility", "Tru"): 40.0,
                        ("Utility", "Fac"): 50.0, ("Utility", "Flu"): float("nan")})
    fig = plots.tradeoff(curve.set_index(["Method", "step", "value"]), before=before, title="t")
    assert _panel_titles(fig) == ["Neighbor All", "TruthfulQA (Tru)", "TriviaQA (Fac)", "AlpacaEval fluency (Flu)"]
    neighbor, tru, fac, flu = fig.axes[:4]
    ga = next(line for line in neighbor.lines if line.get_label() == "GA Full")
    assert list(ga.get_xdata()) == [60.0, 50.0, 40.0] and list(ga.get_ydata()) == [90.0, 80.0, 70.0]  # from Before
    assert [line.get_color() for line in tru.lines][:2] == [plots.method_style(m)["color"] for m in ("RepE", "GA Full")]
    # TriviaQA and fluency were not measured: their panels say so instead of standing empty
    for ax in (fac, flu):
        assert not ax.lines and plots.NOT_MEASURED in [t.get_text() for t in ax.texts]
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["RepE", "GA Full", "Before"]  # one entry each
    _inside_the_image(fig)


def _inside_the_image(fig):
    """The shared legend and every panel lie inside the saved image, and no panel runs under the legend."""
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1 and legend.y0 >= fig.bbox.y0
    for ax in fig.axes:
        if ax.get_visible():
            box = ax.get_tightbbox()
            assert box.x1 <= legend.x0 and box.x0 >= fig.bbox.x0 and box.y1 <= fig.bbox.y1


def test_fig5_and_fig7_draw_every_panel_of_the_paper():
    index = pd.MultiIndex.from_tuples([(m, n) for m in ("NPO", "GA") for n in (1, 2)], names=["Method", "Targets"])
    table = pd.DataFrame({c: [10.0, 20.0, 30.0, 40.0] for c in plots.FIG5_PANELS}, index=index)
    table[("Utility", "Rea")] = float("nan")
    fig = plots.by_group(table, "Targets", "line", title="t")
    assert _panel_titles(fig) == [plots.PANEL_NAMES[c] for c in plots.FIG5_PANELS] and len(plots.FIG5_PANELS) == 12
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    npo = next(line for line in axes["Forget QA"].lines if line.get_label() == "NPO")
    assert list(npo.get_ydata()) == [10.0, 20.0] and npo.get_color() == plots.method_style("NPO")["color"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["GA", "NPO"]  # the paper's order
    assert not axes["BBH (Rea)"].lines and plots.NOT_MEASURED in [t.get_text() for t in axes["BBH (Rea)"].texts]
    windows = pd.MultiIndex.from_tuples([(m, w) for m in ("GA", "RT") for w in ("0-1", "2-3")], names=["Method", "Layers"])
    layers = pd.DataFrame({c: [1.0, 2.0, 3.0, 4.0] for c in plots.FIG7_PANELS}, index=windows)
    fig = plots.by_group(layers, "Layers", "bar")
    assert _panel_titles(fig) == [plots.PANEL_NAMES[c] for c in plots.FIG7_PANELS] and len(plots.FIG7_PANELS) == 8
    bars = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}["TruthfulQA (Tru)"].patches
    assert sorted(b.get_height() for b in bars) == [1.0, 2.0, 3.0, 4.0]
    _inside_the_image(fig)


def test_fig5_lines_of_equal_values_both_show():
    """Two methods with the same numbers (Fig. 5: GA and NPO both at 0 on 4 targets): the one drawn first is wider,
    so it shows around the one on top."""
    index = pd.MultiIndex.from_tuples([(m, n) for m in ("GA", "NPO") for n in (1, 4)], names=["Method", "Targets"])
    table = pd.DataFrame({c: [34.0, 0.0, 34.0, 0.0] for c in plots.FIG5_PANELS}, index=index)
    fig = plots.by_group(table, "Targets", "line")
    ga, npo = {ax.get_title(): ax for ax in fig.axes}["Forget FB"].lines
    assert (ga.get_label(), npo.get_label()) == ("GA", "NPO") and list(ga.get_ydata()) == list(npo.get_ydata())
    assert ga.get_linewidth() > npo.get_linewidth() and ga.get_markersize() > npo.get_markersize()
    assert ga.get_zorder() <= npo.get_zorder()


def test_knowledge_bars_keep_the_legend_off_the_bars_and_label_a_zero():
    columns = pd.MultiIndex.from_tuples([("Forget", c) for c in ("FB", "QA", "AA")] + [("Neighbor", c) for c in ("FB", "QA")])
    table = pd.DataFrame([[50.0, 40.0, 30.0, 90.0, 85.0], [0.0, 5.0, 2.0, 60.0, 55.0]], columns=columns,
                         index=["smollm2-135m-instruct, injected knowledge", "Paper, LLaMA3-8B-Instruct, real-world knowledge"])
    fig = plots.knowledge_bars(table, title="t")
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(fig.legends) == 1  # the one legend is the figure's, right of the axes
    assert [[b.get_height() for b in bars] for bars in ax.containers] == [[50, 40, 30, 90, 85], [0, 5, 2, 60, 55]]
    assert [t.get_text() for t in ax.texts] == ["0"]  # the zero bar is labelled, not left invisible
    _inside_the_image(fig)


def test_a_zero_bar_of_fig7_is_labelled():
    windows = pd.MultiIndex.from_tuples([(m, w) for m in ("GA", "NPO") for w in ("0-1", "2-3")], names=["Method", "Layers"])
    layers = pd.DataFrame({c: [0.0, 2.0, 3.0, 4.0] for c in plots.FIG7_PANELS}, index=windows)
    fig = plots.by_group(layers, "Layers", "bar")
    for ax in fig.axes:
        if ax.get_visible():
            assert [t.get_text() for t in ax.texts] == ["0"]
