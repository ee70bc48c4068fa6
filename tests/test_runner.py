"""The sweep end to end on the tiny model: results stored per (method, variant, target), resumed."""
import json

import pytest

from rwku_nb import models, results, runner
from rwku_nb.errors import RwkuError


def _params(**kw):
    p = {"profile": "test", "model": "tiny-random", "device": "cpu", "targets": "2", "methods": ["before", "icu", "ga"],
         "variants": ["lora"], "corpus": "generated", "corpus_size": 2, "corpus_max_new_tokens": 8,
         "max_length": 32, "warmup_steps": 0, "max_new_tokens": 4, "mia_batch_size": 4,
         "hparams": {"ga": {"lora": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}}
    p.update(kw)
    return p


def test_sweep_stores_and_resumes(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root.parent if rwku.root.name == "Target" else rwku.root))
    rows = runner.run_sweep(_params())
    assert set(zip(rows["method"], rows["variant"])) == {("before", "none"), ("icu", "none"), ("ga", "lora")}
    assert set(rows["target_index"]) == {2}
    n_forget = sum(len(rwku.target(2).forget(level)) for level in (1, 2, 3))
    assert rows.query("metric == 'forget_all' and method == 'before'")["n"].item() == n_forget
    files = sorted((tmp_store / "results" / "test").rglob("*.json"))
    assert len(files) == 3
    data = json.loads(files[0].read_text())
    assert {"meta", "rows", "predictions", "info"} <= set(data) and data["predictions"][0]["prediction"]
    # The generated corpus was cached once per target.
    assert len(list((tmp_store / "cache" / "corpora").glob("*.json"))) == 1

    # A rerun computes nothing: any attempt to run a job would fail.
    monkeypatch.setattr(runner, "run_one", lambda *a, **k: pytest.fail("finished work was recomputed"))
    again = runner.run_sweep(_params())
    assert again.equals(rows)


def test_sweep_restores_original_weights_between_jobs(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root.parent if rwku.root.name == "Target" else rwku.root))
    model, tok = models.load_model("tiny-random", device="cpu")
    snap = models.snapshot_weights(model)
    runner.run_sweep(_params(methods=["ga"], variants=["full", "lora"]), model_and_tokenizer=(model, tok))
    assert all(v.equal(models.snapshot_weights(model)[k]) for k, v in snap.items())
    full = results.read_result(results.result_path("test", "tiny-random", "ga", "full", 2))
    assert full["info"]["losses"]  # the method really trained


def test_unknown_target_and_method_fail_before_any_work(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root.parent if rwku.root.name == "Target" else rwku.root))
    with pytest.raises(RwkuError, match="unknown method"):
        runner.run_sweep(_params(methods=["forgetful"]))
    with pytest.raises(RwkuError):
        runner.run_sweep(_params(targets="Nobody At All"))
    assert not list((tmp_store / "results").rglob("*.json"))
