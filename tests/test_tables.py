"""Table 1 is a faithful view of the tidy rows: means over targets, paper layout, files written."""
import math

import pandas as pd
import pytest

from rwku_nb import answers, evaluation, paper, tables


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
    published = paper.paper_table1()
    assert published.loc["Before", ("Forget", "All")] == 79.6
    assert published.loc["NPO Full", ("MIA", "FM")] == 278.9
    assert list(published.columns) == list(evaluation.table1_columns())  # the paper's layout is Table 1's
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


def _preds():
    """Hand-made predictions: target 1 with 3 level-3 probes (two types), 2 FB probes; target 2 with one
    level-3 probe; methods Before and GA Full."""
    base = {"model": "m", "setting": "single", "set": "forget"}
    rows = []
    for method, variant, scores in (("before", "none", [100, 50, 0, 100, 100, 60]),
                                    ("ga", "full", [0, 50, 100, 0, 100, 20])):
        probes = [(1, 3, 0, "prefix injection"), (1, 3, 1, "prefix injection"), (1, 3, 2, "cross lingual (French)"),
                  (1, 1, 0, ""), (1, 1, 1, ""), (2, 3, 0, "prefix injection")]
        for (target, level, index, kind), score in zip(probes, scores):
            pred = {100: "Carrie", 50: "Carrie Nation", 0: "I don't know", 20: "NOANSWER", 60: "x"}[score]
            rows.append({**base, "method": method, "variant": variant, "target_index": target, "level": level,
                         "index": index, "type": kind, "query": f"q{level}{index}", "answer": "Carrie",
                         "prediction": pred, "rwku": float(score), "rouge-score": float(score) - (5 if score == 50 else 0)})
    return pd.DataFrame(rows)


def test_attack_table_means_per_type_then_over_targets():
    table = answers.attack_table(_preds())
    assert list(table.columns) == ["prefix injection", "cross lingual"]  # AA_TYPES order, languages merged
    # Before, prefix injection: target 1 mean(100, 50) = 75, target 2: 60 -> (75 + 60) / 2.
    assert table.loc["Before", "prefix injection"] == pytest.approx(67.5)
    assert table.loc["GA Full", "prefix injection"] == pytest.approx((25 + 20) / 2)
    assert table.loc["GA Full", "cross lingual"] == 100
    change = answers.attack_change(table)
    assert list(change.index) == ["GA Full"] and change.loc["GA Full", "cross lingual"] == 100
    assert answers.attack_counts(_preds()).to_dict() == {"prefix injection": 3, "cross lingual": 1}


def test_behaviours_and_case_study():
    assert answers.behaviour("I'm sorry, I don't know.", 0) == "refusal"
    assert answers.behaviour("NOANSWER", 0) == "empty"
    assert [answers.behaviour("Carrie", s) for s in (100, 40, 0)] == ["correct", "partial", "wrong"]
    table = answers.behaviour_table(_preds())
    # Before: scores 100, 50, "I don't know" (0), 100, 100, "x" 60 -> 3 correct, 2 partial, 1 refusal of 6.
    assert table.loc["Before"].round(3).to_dict() == {"correct": 50.0, "partial": round(200 / 6, 3), "wrong": 0.0,
                                                     "refusal": round(100 / 6, 3), "empty": 0.0}
    assert table.loc["GA Full", "empty"] == pytest.approx(100 / 6)
    case = answers.case_study(_preds(), per_level=1)
    # Target 1's first fully-known probe of each level (Before recall 100): level 1 index 0, level 3 index 0.
    assert list(case.index.get_level_values("query")) == ["q10", "q30"]
    assert case.loc[(3, "q30", "Carrie"), "GA Full"] == "I don't know"
    assert list(case.columns) == ["Before", "GA Full"]
    # neighbor probes: the same view of the other split only
    preds = _preds()
    neighbor = preds.assign(set="neighbor", prediction=preds["prediction"] + " (n)")
    both = pd.concat([preds, neighbor.query("level == 1")], ignore_index=True)
    near = answers.case_study(both, per_level=1, split="neighbor")
    assert list(near.index.get_level_values("query")) == ["q10"] and near.loc[(1, "q10", "Carrie"), "Before"] == "Carrie (n)"


def test_scorer_sensitivity_counts_changed_probes():
    table = answers.scorer_sensitivity(_preds())
    assert table.loc["Before", "probes"] == 6 and table.loc["Before", "changed"] == 1
    assert table.loc["Before", "mean abs diff"] == pytest.approx(5 / 6)
    # forget All per target, then over targets: rwku (350/5 + 60) / 2; rouge-score 5 points lower on target 1.
    assert table.loc["Before", "forget All rwku"] == pytest.approx((350 / 5 + 60) / 2)
    assert table.loc["Before", "forget All rouge-score"] == pytest.approx((345 / 5 + 60) / 2)


def test_written_tables_get_the_mode_open_would_give(tmp_path):
    """atomic_write_text goes through mkstemp (mode 0600); the file must end as open() would make it."""
    import os

    from rwku_nb.paths import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "t.md", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "u.md", "y")
    finally:
        os.umask(old)
    assert oct((tmp_path / "t.md").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "u.md").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "t.md").read_text() == "x" and not list(tmp_path.glob(".*.tmp"))


def test_the_papers_rows_of_the_profiles_model_go_beside_ours():
    ours = tables.table1(_rows())
    phi = tables.beside_paper(ours, "ours", "microsoft/Phi-3-mini-4k-instruct")
    assert phi.loc[("Paper, Phi-3-mini-4k-instruct (Table 2)", "Before"), ("Forget", "All")] == 51.8
    assert "Paper, LLaMA3-8B-Instruct" not in phi.index.get_level_values(0)
    assert tables.for_writing(ours, "ours", "smollm2-135m-instruct") is ours  # the paper never ran it: ours alone
    written = tables.for_writing(ours, "ours", "meta-llama/Meta-Llama-3-8B-Instruct")
    assert written.loc[("Paper, LLaMA3-8B-Instruct", "GA LoRA"), ("Forget", "FB")] == 67.0
    mistral = tables.for_writing(ours, "ours", "mistralai/Mistral-7B-Instruct-v0.2")
    assert list(mistral.loc["Paper, Mistral-7B-Instruct-v0.2 (Table 6)"].index) == ["Before"]  # Table 6: Before only
    assert mistral.loc[("Paper, Mistral-7B-Instruct-v0.2 (Table 6)", "Before"), ("Utility", "Flu")] == 698.9


def test_mia_table_shows_every_attack_scaled_as_labelled():
    rows = []
    for target, (zlib, auc) in {1: (-0.0100, 0.30), 2: (-0.0120, 0.50)}.items():
        for metric, value in (("mia_fm_loss", 250.0 + target), ("mia_fm_zlib", zlib), ("mia_rm_minkpp20", -2.5),
                              ("mia_auc_mink_0.2", auc), ("mia_auc_mink_0.3", 0.9), ("forget_all", 40.0)):
            rows.append({"model": "m", "setting": "single", "method": "ga", "variant": "full", "target_index": target,
                         "target": str(target), "metric": metric, "value": value, "n": 3})
    rows.append({**rows[0], "setting": "epoch-1", "value": 999.0})  # a curve point is not a Table 1 row
    t = tables.mia_table(pd.DataFrame(rows))
    assert list(t.index) == ["GA Full"]
    assert t.loc["GA Full", ("FM", "LOSS")] == 251.5  # (251 + 252) / 2
    assert t.loc["GA Full", ("FM", "Zlib x1000")] == pytest.approx(-11.0)  # mean -0.011, x1000
    assert t.loc["GA Full", ("RM", "Min-K%++ 20%")] == -2.5
    assert t.loc["GA Full", ("AUC % (FM vs RM)", "Min-K% 20%")] == pytest.approx(40.0)  # k = 20% only, in percent
    assert math.isnan(t.loc["GA Full", ("RM", "LOSS")])  # not measured -> NaN
    assert tables.mia_table(pd.DataFrame()).empty


def test_dataset_statistics_count_the_data_present(tmp_path):
    import json

    from rwku_nb.data import RWKU

    def fb(query):
        return {"query": query, "answer": "x", "level": "1", "type": "cloze", "subject": "s"}

    files = {"1_Stephen_King": {"forget_level1": [fb("He is an American ___"), fb("Born in ___")]},
             "2_Confucius": {"forget_level1": [fb("A Chinese ___ philosopher")],
                             "forget_mia": [{"text": "one two three four five"}]}}
    for folder, stems in files.items():
        d = tmp_path / "Target" / folder
        d.mkdir(parents=True)
        (d / "intro.json").write_text(json.dumps([{"target": folder[2:].replace("_", " "), "intro": "x"}]))
        for stem, rows in stems.items():
            (d / f"{stem}.json").write_text(json.dumps(rows))
    t = tables.dataset_statistics(RWKU(tmp_path).select("all"))
    assert t.loc["Forget FB", ("Here", "Targets")] == 2 and t.loc["Forget FB", ("Here", "Items")] == 3
    assert t.loc["Forget FB", ("Here", "Avg. length")] == pytest.approx((5 + 3 + 4) / 3)  # query words
    assert t.loc["MIA FM", ("Here", "Targets")] == 1 and t.loc["MIA FM", ("Here", "Avg. length")] == 5.0
    assert t.loc["Forget QA", ("Here", "Items")] == 0 and math.isnan(t.loc["Forget QA", ("Here", "Avg. length")])
    assert t.loc["Neighbor FB", ("Paper, 200 targets", "Items")] == 5846


def test_curve_table_ends_every_trained_run_at_its_table1_result():
    rows = []
    for setting, method, forget in (("epoch-1", "ga", 50.0), ("single", "ga", 40.0), ("single", "sga", 45.0),
                                    ("single", "before", 60.0)):
        for metric, value in (("forget_all", forget), ("neighbor_all", 80.0)):
            rows.append({"model": "m", "setting": setting, "method": method, "variant": "none" if method == "before"
                         else "full", "target_index": 1, "target": "1", "metric": metric, "value": value, "n": 1})
    curve = tables.curve_table(pd.DataFrame(rows)).reset_index()
    # GA: a point after epoch 1, then its final result at epoch 2; SGA stopped after one epoch: its final at 1
    assert curve[["Method", "value", "Forget All"]].values.tolist() == [["GA Full", 1, 50.0], ["GA Full", 2, 40.0],
                                                                     ["SGA Full", 1, 45.0]]
    no_curve = pd.DataFrame([r for r in rows if r["setting"] == "single"])
    assert tables.curve_table(no_curve).empty  # a sweep without curve points draws no curve


def test_utility_statistics_set_the_data_beside_the_datasheet_and_the_code(tmp_path):
    import json

    from rwku_nb.data import RWKU

    mmlu = [{"task": "t", "question": "one two three", "choices": ["a", "b", "c", "d"], "answer": 0, "examples": []},
            {"task": "t", "question": "one", "choices": ["a", "b", "c", "d"], "answer": 1, "examples": []}]
    for folder, rows in (("1_Stephen_King", mmlu), ("2_Confucius", None)):
        d = tmp_path / "Target" / folder
        d.mkdir(parents=True)
        (d / "intro.json").write_text(json.dumps([{"target": folder[2:].replace("_", " "), "intro": "x"}]))
        if rows:
            (d / "retain_mmlu.json").write_text(json.dumps(rows))
    t = tables.utility_statistics(RWKU(tmp_path).select("all"))
    row = t.loc["MMLU (Gen)"]
    # target 2 has no copy and reads target 1's: one distinct set of 2 items, 2 words on average
    assert row[("Here", "Targets with a copy")] == 1 and row[("Here", "Distinct sets")] == 1
    assert row[("Here", "Items per target")] == 2 and row[("Here", "Avg. length")] == 2.0
    assert row[("Paper datasheet", "Items per target")] == 171 and row[("Official code", "Items scored")] == 2
    assert list(t.index) == ["MMLU (Gen)", "BBH (Rea)", "TruthfulQA (Tru)", "TriviaQA (Fac)", "AlpacaEval fluency (Flu)"]
    bbh = t.loc["BBH (Rea)"]  # in no target folder: counted as absent, not an error
    assert bbh[("Here", "Targets with a copy")] == 0 and bbh[("Here", "Items per target")] == 0
    assert math.isnan(bbh[("Here", "Avg. length")]) and bbh[("Paper datasheet", "Items per target")] == 81
