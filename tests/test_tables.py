"""Table 1 is a faithful view of the tidy rows: means over targets, paper layout, files written."""
import math

import pandas as pd
import pytest

from rwku_nb import tables


def _rows():
    rows = []
    for target, (fb, nb_all, loss) in {1: (10.0, 80.0, 250.0), 2: (30.0, 60.0, 270.0)}.items():
        for method, variant in (("before", "none"), ("ga", "lora")):
            shift = 0 if method == "before" else -5
            for metric, value in (("forget_fb", fb + shift), ("neighbor_all", nb_all), ("mia_fm_loss", loss)):
                rows.append({"model": "m", "setting": "single", "method": method, "variant": variant,
                             "target_index": target,
                             "target": str(target), "metric": metric, "value": value, "n": 3})
    return pd.DataFrame(rows)


def test_table1_means_over_targets_in_paper_layout():
    t = tables.table1(_rows())
    assert list(t.index) == ["Before", "GA LoRA"]  # paper row order
    assert t.loc["Before", ("Forget", "FB")] == 20.0  # (10 + 30) / 2
    assert t.loc["GA LoRA", ("Forget", "FB")] == 15.0
    assert t.loc["Before", ("Neighbor", "All")] == 70.0
    assert t.loc["Before", ("MIA", "FM")] == 260.0
    assert math.isnan(t.loc["Before", ("Forget", "QA")])  # not measured -> NaN, never 0
    assert tables.n_targets(_rows()).to_dict() == {"Before": 2, "GA LoRA": 2}


def test_paper_table_and_side_by_side():
    paper = tables.paper_table1()
    assert paper.loc["Before", ("Forget", "All")] == 79.6
    assert paper.loc["NPO Full", ("MIA", "FM")] == 278.9
    both = tables.beside_paper(tables.table1(_rows()), "ours")
    assert ("Paper, LLaMA3-8B-Instruct", "GA LoRA") in both.index
    assert both.loc[("Paper, LLaMA3-8B-Instruct", "GA LoRA"), ("Forget", "FB")] == 67.0


def test_write_table_carries_its_caption(tmp_store):
    caption = "m on profile t, injected knowledge"
    csv_name, md_name = tables.write_table(tables.table1(_rows()), "table1_test", caption)
    assert csv_name.endswith("table1_test.csv") and md_name.endswith("table1_test.md")
    csv = pd.read_csv(tmp_store / "figures" / "table1_test.csv")
    assert list(csv.columns[:4]) == ["Method", "Setting", "Forget FB", "Forget QA"]
    assert set(csv["Setting"]) == {caption}
    assert csv.set_index("Method").loc["GA LoRA", "Forget FB"] == 15.0
    md = (tmp_store / "figures" / "table1_test.md").read_text()
    assert md.startswith(caption + "\n") and "| Before" in md


def test_knowledge_table_puts_each_kind_beside_the_paper_before_row():
    real = _rows().query("method == 'before'").assign(knowledge="real-world knowledge")
    injected = real.assign(value=real["value"] + 50, knowledge="injected knowledge")
    t = tables.knowledge_table(pd.concat([real, injected]), "m")
    assert list(t.index) == ["m, real-world knowledge", "m, injected knowledge",
                             "Paper, LLaMA3-8B-Instruct, real-world knowledge"]
    assert t.loc["m, real-world knowledge", ("Forget", "FB")] == 20.0
    assert t.loc["m, injected knowledge", ("Forget", "FB")] == 70.0
    assert t.iloc[2][("Forget", "All")] == 79.6


def test_batch_and_layer_tables_mean_over_targets():
    rows = []
    for n, targets in ((1, {1: 40.0}), (2, {1: 20.0, 2: 10.0})):
        for t, v in targets.items():
            rows.append({"model": "m", "setting": f"batch-{n}", "method": "ga", "variant": "full",
                         "target_index": t, "target": str(t), "metric": "forget_all", "value": v, "n": 3})
    for variant, v in (("layers-0-2", 30.0), ("layers-14-16", 50.0), ("full", 99.0)):
        rows.append({"model": "m", "setting": "single", "method": "npo", "variant": variant, "target_index": 1,
                     "target": "1", "metric": "forget_all", "value": v, "n": 3})
    df = pd.DataFrame(rows)
    batch = tables.batch_table(df)
    assert batch.loc[("GA", 1), ("Forget", "All")] == 40.0 and batch.loc[("GA", 2), ("Forget", "All")] == 15.0
    assert "MIA" not in batch.columns.get_level_values(0)
    layers = tables.layer_table(df)
    assert list(layers.index) == [("NPO", "0-1"), ("NPO", "14-15")]  # layer windows shown inclusive
    assert layers.loc[("NPO", "14-15"), ("Forget", "All")] == 50.0
    assert list(tables.table1(df).index) == ["NPO Full"]


def test_bootstrap_ci_over_targets():
    t = tables.table1_ci(_rows(), n_boot=4000, seed=1)
    # Two targets with forget FB 10 and 30: resamples give means 10, 20 or 30 -> the 95% interval is [10, 30].
    assert t.loc["Before", ("Forget", "FB")] == "20.0 [10.0, 30.0]"
    assert t.loc["Before", ("MIA", "FM")] == "260.0 [250.0, 270.0]"
    one = _rows().query("target_index == 1")
    assert tables.table1_ci(one).loc["GA LoRA", ("Forget", "FB")] == "5.0 [5.0, 5.0]"  # one target: no spread
    assert tables.table1_ci(_rows(), seed=3).equals(tables.table1_ci(_rows(), seed=3))  # seeded
