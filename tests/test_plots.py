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
