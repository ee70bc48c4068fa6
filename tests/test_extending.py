"""README "How it fits together": adding a method or a metric is one registered function, and it then runs
through a sweep like the built-in ones and appears in Table 1 (here a toy method and a toy metric registered from
the test)."""
import pytest

import numpy as np

from rwku_nb import evaluation, methods, models, runner, settings, tables
from rwku_nb.errors import RwkuError
from rwku_nb.config import make_params
from rwku_nb.training import sequence_nll, text_examples, token_count


@pytest.fixture
def toy_method(monkeypatch):
    """'toy': gradient ascent with its loss scaled by a profile key it declares beside its code (`toy_scale`),
    with default hyperparameters of its own."""
    monkeypatch.setitem(methods.METHODS, "toy", None)  # removed again after the test, as its key below

    @methods.register("toy", "Toy", trains=True, corpora=("positive",),
                      settings={"toy_scale": settings.Setting(1.0, settings.NUMBER,
                                                              check=settings.positive_number("toy_scale"))},
                      hparams={"full": {"lr": 1e-2, "epochs": 1, "batch_size": 2}})
    def run(ctx):
        loss = lambda m, b: -ctx.params["toy_scale"] * sequence_nll(m, b).sum() / token_count(b).sum()
        ctx.train(text_examples(ctx.tokenizer, ctx.corpus["positive"], ctx.params["max_length"]), loss, "toy", "Toy")
        ctx.info["toy"] = True
        return {}

    yield run
    settings.SETTINGS.pop("toy_scale")
    settings.SECTIONS.pop("toy")


def test_a_method_registered_from_outside_runs_through_a_sweep_into_table1(toy_method, tmp_store, rwku,
                                                                            monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    base = {"profile": "toy", "model": "tiny-random", "inject": [], "targets": "1", "methods": ["before", "toy"],
            "variants": ["full", "lora"], "curve": False, "utility": ["mmlu"], "utility_size": 2, "corpus_size": 2,
            "corpus_max_new_tokens": 8, "max_new_tokens": 4, "max_length": 32, "warmup_steps": 0,
            "hparams": {"toy": {"lora": {"lr": 1e-2, "epochs": 1, "batch_size": 2}}}}  # full: its own default
    rows = runner.run_sweep(make_params(base))
    table = tables.table1(rows)
    assert list(table.index) == ["Before", "Toy Full", "Toy LoRA"]
    # it changed the model: the forget-set MIA loss (LOSS on FM) moved away from Before's
    fm = table[("MIA", "FM")]
    assert fm["Toy Full"] != fm["Before"] and fm["Toy LoRA"] != fm["Before"]
    # its declared profile key is part of its identity: a changed value recomputes only the toy jobs
    keys = {j.method: j.key for j in runner.sweep_jobs(make_params(base))}
    other = {j.method: j.key for j in runner.sweep_jobs(make_params({**base, "toy_scale": 2.0}))}
    assert other["before"] == keys["before"] and other["toy"] != keys["toy"]
    # validated from its declaration like every built-in key, with the same kind of error
    with pytest.raises(RwkuError, match=r"x.yaml: key 'toy_scale' has value -1; expected a positive number"):
        make_params({**base, "toy_scale": -1}, source="x.yaml")
    with pytest.raises(RwkuError, match=r"x.yaml: key 'toy_scale' has value 'big' of type str; expected int or float"):
        make_params({**base, "toy_scale": "big"}, source="x.yaml")
    with pytest.raises(RwkuError, match="'toy_scale' is declared twice with different settings"):
        settings.declare("elsewhere", toy_scale=settings.Setting(2.0, settings.NUMBER))


@pytest.fixture
def toy_metric(monkeypatch):
    """'forget_words': the mean number of words of the forget-probe answers, a column ("Toy", "Words")."""
    monkeypatch.setitem(evaluation.METRICS, "forget_words", None)  # removed again after the test

    @evaluation.register_metric("forget_words", "probes", {"forget_words": ("Toy", "Words")})
    def compute(ev):
        words = [len(p["prediction"].split()) for p in ev.predictions if p["set"] == "forget"]
        return [{"metric": "forget_words", "value": float(np.mean(words)), "n": len(words)}]

    return compute


def test_a_metric_registered_from_outside_runs_through_a_sweep_into_table1(toy_metric, tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    params = make_params({"profile": "toy", "model": "tiny-random", "inject": [], "targets": "1",
                          "methods": ["before", "ga"], "variants": ["full"], "curve": False, "utility": [],
                          "corpus_size": 2, "corpus_max_new_tokens": 8, "max_new_tokens": 4, "max_length": 32,
                          "warmup_steps": 0, "hparams": {"ga": {"full": {"lr": 1e-2, "epochs": 1, "batch_size": 2}}}})
    table = tables.table1(runner.run_sweep(params))
    assert list(table.columns)[-1] == ("Toy", "Words")  # after the registered metrics' columns
    preds = runner.sweep_predictions(params)
    for method, label in (("before", "Before"), ("ga", "GA Full")):
        forget = preds.query("method == @method and set == 'forget'")
        assert table.loc[label, ("Toy", "Words")] == pytest.approx(forget["prediction"].str.split().str.len().mean())
    # part of every job's identity: results computed without the metric are never taken for results with it
    keys = {j.method: j.key for j in runner.sweep_jobs(params)}
    with monkeypatch.context() as m:
        m.delitem(evaluation.METRICS, "forget_words")
        assert ("Toy", "Words") not in evaluation.table1_columns()
        plain = {j.method: j.key for j in runner.sweep_jobs(params)}
    assert plain["before"] != keys["before"] and plain["ga"] != keys["ga"]


def test_the_mia_row_names_are_checked_at_registration_and_when_a_metric_runs(monkeypatch, rwku):
    """Rows named mia_* belong to the mia stage (they are dropped from curve points and MIA-less jobs), and only
    they: a column that breaks the rule fails at registration, a returned row that breaks it when evaluated."""
    monkeypatch.setitem(evaluation.METRICS, "bad", None)
    for stage, row in (("probes", "mia_words"), ("mia", "words")):
        with pytest.raises(RwkuError, match=rf"metric 'bad' \(stage {stage}\) reports rows \['{row}'\].*rename them"):
            evaluation.register_metric("bad", stage, {row: ("Toy", "Bad")})(lambda ev: [])

    @evaluation.register_metric("bad", "probes", {"words": ("Toy", "Words")})
    def compute(ev):
        return [{"metric": "mia_words", "value": 1.0, "n": 1}]

    model, tok = models.load_model("tiny-random")
    params = make_params({"profile": "toy", "model": "tiny-random", "utility": [], "max_new_tokens": 2})
    with pytest.raises(RwkuError, match=r"metric 'bad' \(stage probes\) returned rows \['mia_words'\]"):
        evaluation.evaluate_target(model, tok, rwku.select([1])[0], params, mia=False)
