"""The sweep end to end on the tiny model: results stored per (method, variant, target), resumed."""
import dataclasses
import json

import pytest
import torch

from rwku_nb import models, results, runner, tables, variants
from rwku_nb.errors import RwkuError


def _params(**kw):
    p = {"profile": "test", "model": "tiny-random", "device": "cpu", "targets": "2", "methods": ["before", "icu", "ga"],
         "variants": ["lora"], "corpus": "generated", "corpus_size": 2, "corpus_max_new_tokens": 8,
         "max_length": 32, "warmup_steps": 0, "max_new_tokens": 4, "mia_batch_size": 4,
         "hparams": {"ga": {"lora": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}, "curve": False,
         "utility_size": 2}
    p.update(kw)
    return p


def test_sweep_stores_and_resumes(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root.parent if rwku.root.name == "Target" else rwku.root))
    rows = runner.run_sweep(_params())
    assert set(zip(rows["method"], rows["variant"])) == {("before", "none"), ("icu", "none"), ("ga", "lora")}
    assert set(rows["target_index"]) == {2}
    n_forget = sum(len(rwku.target(2).forget(level)) for level in (1, 2, 3))
    assert rows.query("metric == 'forget_all' and method == 'before'")["n"].item() == n_forget
    # Every final model is also scored on the five utility sets, capped at utility_size items each.
    utility = rows[rows["metric"].str.startswith("utility_")]
    assert set(utility["metric"]) == {f"utility_{n}" for n in ("mmlu", "bbh", "truthfulqa", "triviaqa", "fluency")}
    assert (utility.groupby("method").size() == 5).all() and (utility["n"] == 2).all()
    assert tables.table1(rows)[("Utility", "Flu")].notna().all()
    files = sorted((tmp_store / "results" / "test").rglob("*.json"))
    assert len(files) == 3 and all(f.parent.parent.name == "single" for f in files)
    data = json.loads(files[0].read_text())
    assert {"meta", "rows", "predictions", "info"} <= set(data) and data["predictions"][0]["prediction"]
    # The generated corpus was cached once per target.
    assert len(list((tmp_store / "cache" / "corpora").glob("*.json"))) == 1

    # A rerun computes nothing: any attempt to run a job would fail.
    monkeypatch.setattr(runner, "run_job", lambda *a, **k: pytest.fail("finished work was recomputed"))
    again = runner.run_sweep(_params())
    assert again.equals(rows)


def test_results_without_the_requested_utility_sets_are_recomputed(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    p = _params(methods=["before"], utility=[])
    assert not runner.run_sweep(p)["metric"].str.startswith("utility").any()
    calls = []
    real = runner.run_job
    monkeypatch.setattr(runner, "run_job", lambda *a, **k: calls.append(a[3].method) or real(*a, **k))
    rows = runner.run_sweep({**p, "utility": ["triviaqa"]})
    assert calls == ["before"] and set(rows.query("metric.str.startswith('utility')", engine="python")["metric"]) == {
        "utility_triviaqa"}
    runner.run_sweep({**p, "utility": ["triviaqa"]})  # now complete: not run again
    assert calls == ["before"]


def test_sweep_restores_original_weights_between_jobs(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root.parent if rwku.root.name == "Target" else rwku.root))
    model, tok = models.load_model("tiny-random", device="cpu")
    snap = variants.snapshot_weights(model)
    runner.run_sweep(_params(methods=["ga"], variants=["full", "lora"]), model_and_tokenizer=(model, tok))
    assert all(v.equal(variants.snapshot_weights(model)[k]) for k, v in snap.items())
    full = results.read_result(results.stored("test", "tiny-random", "ga", "full", 2))
    assert full["info"]["losses"]  # the method really trained


def test_curves_partial_layers_and_repe_points(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    hp = {m: {"full": {"lr": 1e-3, "epochs": 3, "batch_size": 2}} for m in ("ga", "npo")}
    rows = runner.run_sweep(_params(targets="1", methods=["repe", "ga"], variants=["full", "layers-0-1"],
                                    hparams=hp, curve=True, repe_alphas=[0.5, 2.0], utility=["mmlu", "truthfulqa"]),
                            mia=False)
    settings = set(zip(rows["setting"], rows["method"], rows["variant"]))
    assert {("single", "ga", "full"), ("epoch-1", "ga", "full"), ("epoch-2", "ga", "full"),
            ("single", "ga", "layers-0-1"),
            ("single", "repe", "none"), ("alpha-0.5", "repe", "none"), ("alpha-2", "repe", "none")} == settings
    assert not rows["metric"].str.startswith("mia").any()
    # utility on every point (paper Figs. 3 and 7 plot it): each curve point and layer window has each set
    utility = rows[rows["metric"].str.startswith("utility")]
    assert set(utility.groupby(["setting", "method", "variant"])["metric"].nunique()) == {2}
    assert len(utility.groupby(["setting", "method", "variant"])) == len(settings)
    curve = tables.curve_table(rows).reset_index()
    point = rows.query("setting == 'alpha-0.5' and metric == 'utility_mmlu'")["value"].item()
    assert curve.query("step == 'alpha' and value == 0.5")["Utility Gen"].item() == point
    ga = curve[curve["Method"] == "GA Full"]
    assert list(ga["value"]) == [1, 2, 3] and set(curve["step"]) == {"epoch", "alpha"}
    single = rows.query("setting == 'single' and method == 'ga' and variant == 'full' and metric == 'forget_all'")
    assert ga["Forget All"].iloc[-1] == single["value"].item()  # the last epoch is the Table 1 result
    assert list(tables.table1(rows).index) == ["RepE", "GA Full"]  # partial-layer runs stay out of Table 1
    layers = tables.layer_table(rows)
    assert list(layers.index) == [("GA", "0-0")]


def test_seed0_methods_give_curve_points_without_changing_their_result(tmp_store, rwku, monkeypatch):
    """SGA and TAU pass the sweep's epoch hook on (selective.unlearn's after_epoch): every epoch training goes
    on from is a curve point (TAU's: the arithmetic-edited model it would return then), and the final result is
    the same with and without the curve."""
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    hp = {m: {"full": {"lr": 1e-3, "epochs": 3, "batch_size": 2}} for m in ("sga", "tau")}
    # sga_stop 0: never stop early; tau_switch 1: TAU switches to descent at once and edits its weights each epoch
    common = dict(targets="1", methods=["sga", "tau"], variants=["full"], hparams=hp, sga_stop=0.0, tau_switch=1.0)
    rows = runner.run_sweep(_params(**common, curve=True), mia=False)
    settings = set(zip(rows["setting"], rows["method"]))
    assert settings == {(s, m) for s in ("single", "epoch-1", "epoch-2") for m in ("sga", "tau")}, settings
    curve = tables.curve_table(rows).reset_index()
    assert set(curve["Method"]) == {"SGA Full", "TAU Full"} and list(curve.query("Method == 'SGA Full'")["value"]) == [1, 2, 3]
    monkeypatch.setenv("RWKU_NB_RESULTS", str(tmp_store / "no-curve"))
    plain = runner.run_sweep(_params(**common, curve=False), mia=False)
    final = rows.query("setting == 'single'").set_index(["method", "metric"])["value"]
    assert final.equals(plain.set_index(["method", "metric"])["value"].loc[final.index])


def test_every_method_runs_end_to_end_on_real_corpora(tmp_store, rwku, monkeypatch):
    """Each registered method, with the corpora the runner builds for it (passages, generated positive,
    pair and reject samples) on a real target, trains and is stored."""
    from rwku_nb.methods import METHODS

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    hp = {m: {"full": {"lr": 1e-3, "epochs": 1, "batch_size": 2}} for m, spec in METHODS.items() if spec.trains}
    rows = runner.run_sweep(_params(targets="1", methods=sorted(METHODS), variants=["full"], hparams=hp), mia=False)
    assert set(rows["method"]) == set(METHODS)
    for method, spec in METHODS.items():
        data = results.read_result(results.stored("test", "tiny-random", method,
                                                       "full" if spec.trains else "none", 1))
        assert set(data["meta"]["corpus_sizes"]) == set(spec.corpora)
        assert all(0 < n <= 2 for n in data["meta"]["corpus_sizes"].values())  # capped by corpus_size


def test_batch_target_unlearns_the_union_and_reports_every_target(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    seen = []
    real = runner.METHODS["ga"].run

    def spy(ctx):
        seen.append(([t.index for t in ctx.targets], len(ctx.corpus["positive"]), ctx.hparams("ga")))
        return real(ctx)

    monkeypatch.setitem(runner.METHODS, "ga", dataclasses.replace(runner.METHODS["ga"], run=spy))
    hp = {"ga": {"batch": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}
    rows = runner.run_batch(_params(batch_targets=[1, 2], batch_sizes=[1, 2], batch_methods=["ga"], hparams=hp,
                                    utility=["truthfulqa"]))
    assert seen[0][0] == [1] and seen[1][0] == [1, 2]
    assert seen[1][1] == 2 * seen[0][1]  # the union of both targets' corpora
    assert seen[1][2] == {"lr": 1e-3, "epochs": 1, "batch_size": 2}
    assert set(zip(rows["setting"], rows["target_index"])) == {("batch-1", 1), ("batch-2", 1), ("batch-2", 2)}
    table = tables.batch_table(rows)
    assert list(table.index) == [("GA", 1), ("GA", 2)]
    # utility per point (paper Fig. 5): each target of each batch measured, the point their mean
    tru = rows.query("metric == 'utility_truthfulqa' and setting == 'batch-2'")["value"]
    assert len(tru) == 2 and table.loc[("GA", 2), ("Utility", "Tru")] == tru.mean()
    # The store now holds batch-target GA full rows of target 1: the single-target sweep's rows stay its own.
    full = {"ga": {"full": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}
    single = runner.run_sweep(_params(targets="1", methods=["ga"], variants=["full"], hparams=full, utility=[]))
    assert set(single["setting"]) == {"single"} and len(single) > 0
    with pytest.raises(RwkuError, match="batch_sizes goes up to 3"):
        runner.run_batch(_params(batch_targets=[1, 2], batch_sizes=[3], batch_methods=["ga"], hparams=hp))


def test_unknown_target_and_method_fail_before_any_work(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root.parent if rwku.root.name == "Target" else rwku.root))
    with pytest.raises(RwkuError, match="unknown method"):
        runner.run_sweep(_params(methods=["forgetful"]))
    with pytest.raises(RwkuError):
        runner.run_sweep(_params(targets="Nobody At All"))
    assert not list((tmp_store / "results").rglob("*.json"))


def test_icu_and_repe_unlearn_several_targets_at_once(tmp_store, rwku, monkeypatch):
    """Paper Fig. 5 runs ICU and RepE on batches too: ICU names every target of the batch in one instruction,
    RepE steers with one vector read from every target's stimuli. With one target both are exactly their
    single-target runs."""
    from rwku_nb import evaluate, prompts

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    names = [rwku.target(i).name for i in (1, 2)]
    vectors, subjects = {}, set()
    real_run, real_prompt = runner.METHODS["repe"].run, evaluate.probe_prompt

    def spy_run(ctx):
        how = real_run(ctx)
        vectors[tuple(t.index for t in ctx.targets)] = how["vector"].clone()
        return how

    def spy_prompt(tokenizer, probe, level, icu_subject=None):
        subjects.add(icu_subject)
        return real_prompt(tokenizer, probe, level, icu_subject)

    monkeypatch.setitem(runner.METHODS, "repe", dataclasses.replace(runner.METHODS["repe"], run=spy_run))
    monkeypatch.setattr(evaluate, "probe_prompt", spy_prompt)
    common = dict(utility=["truthfulqa"], repe_alpha=2.0)
    batch = runner.run_batch(_params(batch_targets=[1, 2], batch_sizes=[1, 2], batch_methods=["icu", "repe"], **common))
    assert set(zip(batch["setting"], batch["method"], batch["variant"])) == \
        {(f"batch-{n}", m, "none") for n in (1, 2) for m in ("icu", "repe")}
    # ICU on two targets: every prompt of the batch names both (and the batch of one, target 1 alone)
    assert subjects == {None, names[0], f"{names[0]} and {names[1]}"}
    # RepE on two targets: one vector over both targets' stimuli, not target 1's alone
    assert set(vectors) == {(1,), (1, 2)} and not torch.equal(vectors[(1, 2)], vectors[(1,)])
    # a batch of one target is exactly the single-target run
    single = runner.run_sweep(_params(targets="1", methods=["icu", "repe"], **common), mia=False)
    key = ["method", "metric"]
    one = batch.query("setting == 'batch-1'").set_index(key)["value"].sort_index()
    assert one.equals(single.set_index(key)["value"].sort_index().loc[one.index])
    assert prompts.names_together(["A", "B", "C"]) == "A, B and C" and prompts.icu_subject(False, "A") is None


def test_reference_log_probs_are_computed_once_per_sweep(tmp_store, rwku, monkeypatch):
    """NPO's and DPO's references are values of the original model: the full, LoRA and partial-layer runs of a
    target share them (LoRA's zero adapters add exact zeros), and a run reusing them gives the same numbers
    as one computing its own."""
    from rwku_nb import lifecycle
    from rwku_nb.methods import dpo, npo

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    calls = []
    for module, name in ((npo, "reference_nll"), (dpo, "reference_logps")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    hp = {m: {v: {"lr": 1e-3, "epochs": 1, "batch_size": 2} for v in ("full", "lora")} for m in ("npo", "dpo")}
    common = dict(targets="1", methods=["npo", "dpo"], hparams=hp, utility=[])
    rows = runner.run_sweep(_params(**common, variants=["full", "lora", "layers-0-1"]), mia=False)
    assert sorted(calls) == ["reference_logps", "reference_nll"]  # once each, for three variants
    # LoRA alone, its references computed afresh: the same numbers
    monkeypatch.setattr(lifecycle, "_MEMO", (None, {}))
    monkeypatch.setenv("RWKU_NB_RESULTS", str(tmp_store / "alone"))
    alone = runner.run_sweep(_params(**common, variants=["lora"]), mia=False)
    assert len(calls) == 4
    key = ["method", "variant", "metric"]
    shared = rows.query("variant == 'lora'").set_index(key)["value"].sort_index()
    assert shared.equals(alone.set_index(key)["value"].sort_index())


def test_curve_variants_curve_utility_and_the_repe_point_at_its_table1_weight(tmp_store, rwku, monkeypatch):
    """`curve_variants` picks the runs with curve points, `curve_utility` the sets each point measures, and RepE's
    point at its Table 1 weight is the final evaluation without its MIA rows (and without the sets the points leave
    out), not a second evaluation of the same model."""
    from rwku_nb import jobs, lifecycle

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    calls = []
    real = lifecycle.evaluate_target
    monkeypatch.setattr(lifecycle, "evaluate_target",
                        lambda *a, **k: calls.append((k["mia"], tuple(a[3]["utility"]))) or real(*a, **k))
    hp = {"ga": {v: {"lr": 1e-3, "epochs": 2, "batch_size": 2} for v in ("full", "lora")}}
    params = _params(targets="1", methods=["repe", "ga"], variants=["full", "lora"], hparams=hp, curve=True,
                     curve_variants=["full"], curve_utility=["truthfulqa"], repe_alphas=[0.5, 1.0],
                     utility=["mmlu", "truthfulqa"])
    rows = runner.run_sweep(params)
    assert set(zip(rows["setting"], rows["method"], rows["variant"])) == {
        ("single", "repe", "none"), ("alpha-0.5", "repe", "none"), ("alpha-1", "repe", "none"),
        ("single", "ga", "full"), ("epoch-1", "ga", "full"), ("single", "ga", "lora")}
    # RepE: its final model and the 0.5 point (the 1.0 point is the final's); GA full: epoch 1 and final; LoRA: final
    both, points = ("mmlu", "truthfulqa"), ("truthfulqa",)
    assert sorted(calls) == sorted([(True, both), (False, points), (False, points), (True, both), (True, both)])
    utility = rows[rows["metric"].str.startswith("utility")]
    assert set(utility.query("setting in ['alpha-0.5', 'alpha-1', 'epoch-1']")["metric"]) == {"utility_truthfulqa"}
    assert set(utility.query("setting == 'single'")["metric"]) == {"utility_mmlu", "utility_truthfulqa"}
    final = rows.query("setting == 'single' and method == 'repe'").set_index("metric")["value"]
    point = rows.query("setting == 'alpha-1'").set_index("metric")["value"]
    assert final.index.str.startswith("mia_").any() and not point.index.str.startswith("mia_").any()
    assert point.equals(final.loc[point.index]) and set(final.index) - set(point.index) == \
        {m for m in final.index if m.startswith("mia_")} | {"utility_mmlu"}
    # the identity says which runs have points and what they measure (changing either recomputes them)
    params = runner.as_params(params)
    by = {(j.method, j.variant): j.identity for j in runner.sweep_jobs(params)}
    assert by[("ga", "full")]["curve"]["utility"] == ["truthfulqa"] and "curve" not in by[("ga", "lora")]
    assert "curve" in by[("repe", "none")]
    assert jobs.has_curve(params, "single", "full") and not jobs.has_curve(params, "single", "lora")
    assert jobs.has_curve({**params, "curve_variants": None}, "single", "lora")
    assert not jobs.has_curve(params, "batch-2", "full") and not jobs.has_curve(params, "single", "layers-0-1")


def test_a_batch_point_scores_each_utility_set_once(tmp_store, rwku, monkeypatch):
    """The targets of a batch-target point share one model (and ICU one instruction): each utility set is scored
    once for all of them, and every target reports it."""
    from rwku_nb import evaluation

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    calls = []
    real = evaluation.utility_metrics.evaluate_utility
    monkeypatch.setattr(evaluation.utility_metrics, "evaluate_utility",
                        lambda *a, **k: calls.append(tuple(a[2])) or real(*a, **k))
    rows = runner.run_batch(_params(batch_targets=[1, 2], batch_sizes=[2], batch_methods=["icu"],
                                    utility=["mmlu", "truthfulqa"]))
    assert sorted(calls) == [("mmlu",), ("truthfulqa",)]
    per_target = rows[rows["metric"].str.startswith("utility")].pivot_table(
        index="metric", columns="target_index", values="value")
    assert list(per_target.columns) == [1, 2] and per_target[1].equals(per_target[2])


def test_layer_and_robustness_runs_take_their_own_targets(rwku, monkeypatch):
    """`layer_targets` and `robust_targets` narrow notebooks 04 and 08 to some of the profile's targets."""
    from rwku_nb import robustness
    from rwku_nb.config import load_profile

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    params = load_profile("cpu-smoke", {"targets": [1, 3], "layer_targets": [3], "robust_targets": "1"})
    layer_jobs = runner.sweep_jobs(runner.layer_params(params), mia=False)
    assert {j.targets[0].index for j in layer_jobs} == {3}
    assert {j.targets[0].index for j in robustness.robust_jobs(params)} == {1}
    assert {j.targets[0].index for j in runner.sweep_jobs(params)} == {1, 3}
    plain = load_profile("cpu-smoke", {"targets": [1, 3]})
    assert {j.targets[0].index for j in robustness.robust_jobs(plain)} == {1, 3}


def test_a_capped_mia_is_part_of_the_identity_and_an_uncapped_one_leaves_it_as_it_was(rwku, monkeypatch):
    from rwku_nb.config import load_profile

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    plain, capped = (runner.sweep_jobs(load_profile("cpu-smoke", extra)) for extra in ({}, {"mia_size": 8}))
    assert "mia_size" not in plain[0].identity["evaluation"] and capped[0].identity["evaluation"]["mia_size"] == 8
    assert plain[0].key != capped[0].key


def test_before_scores_each_utility_set_once_for_all_targets(tmp_store, rwku, monkeypatch):
    """Before is the same model for every target: a utility set is scored once per sweep, and every target reports
    the scores a sweep of that target alone computes. ICU (an instruction naming each target) is scored per target."""
    from rwku_nb import evaluation

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    calls = []
    real = evaluation.utility_metrics.evaluate_utility
    monkeypatch.setattr(evaluation.utility_metrics, "evaluate_utility",
                        lambda *a, **k: calls.append((tuple(a[2]), k.get("icu_subject"))) or real(*a, **k))
    rows = runner.run_sweep(_params(targets=[1, 2], methods=["before", "icu", "repe"], utility=["mmlu", "truthfulqa"],
                                    curve=True, repe_alphas=[0.5, 1.0]))
    # Before: each set once; ICU: 2 targets x 2 sets; RepE (hooked, not the original function): its final model
    # (2 targets x 2 sets) and its 0.5 point (2 targets x 2 sets), never Before's scores
    assert sorted(c for c in calls if c[1] is None) == sorted([(("mmlu",), None), (("truthfulqa",), None)] * 5)
    assert len([c for c in calls if c[1] is not None]) == 4
    util = rows[rows["metric"].str.startswith("utility")]
    before = util[util["method"] == "before"].pivot_table(index="metric", columns="target_index", values="value")
    assert list(before.columns) == [1, 2] and before[1].equals(before[2])
    # what target 2's items score on the model as loaded afresh: the shared scores are its own
    model, tok = models.load_model("tiny-random")
    target = rwku.select([2])[0]
    fresh = real(model, tok, {n: evaluation.utility_metrics.subset(target.utility(n), 2) for n in ("mmlu", "truthfulqa")})
    assert {r["metric"]: r["value"] for r in fresh} == before[2].to_dict()
