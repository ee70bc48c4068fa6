"""Sweeps survive faults: a killed sweep resumes without recomputing or losing work, a diverged run is
recorded and the sweep goes on, an out-of-memory error halves the batches and retries."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from rwku_nb import evaluation, results, runner
from rwku_nb.methods import ga


def _params(**kw):
    p = {"profile": "faults", "model": "tiny-random", "device": "cpu", "targets": "2", "methods": ["before", "ga"],
         "variants": ["full"], "corpus_size": 2, "corpus_max_new_tokens": 8, "max_length": 32, "warmup_steps": 0,
         "max_new_tokens": 4, "mia_batch_size": 4, "eval_batch_size": 16, "curve": False, "utility": [],
         "hparams": {"ga": {"full": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}}
    p.update(kw)
    return p


def test_diverged_run_is_recorded_and_the_sweep_goes_on(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    monkeypatch.setattr(ga, "ga_loss", lambda model, batch: model.lm_head.weight.sum() * float("nan"))
    rows = runner.run_sweep(_params(methods=["ga", "before"]))
    diverged = rows.query("method == 'ga'")
    assert list(diverged["metric"]) == ["diverged"] and diverged["n"].item() == 1  # the first step
    assert set(rows.query("method == 'before'")["metric"]) >= {"forget_all", "mia_rm_loss"}  # went on
    meta = results.read_result(results.stored("faults", "tiny-random", "ga", "full", 2))["meta"]
    assert meta["diverged"] is True


def test_out_of_memory_halves_batches_and_retries(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    seen = {"eval": [], "train": []}
    real_probes, real_loss = evaluation.evaluate_probes, ga.ga_loss

    def probes(model, tokenizer, target, batch_size=32, **kw):
        seen["eval"].append(batch_size)
        if batch_size > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return real_probes(model, tokenizer, target, batch_size=batch_size, **kw)

    def loss(model, batch):
        seen["train"].append(batch["input_ids"].shape[0])
        if batch["input_ids"].shape[0] > 1:
            raise RuntimeError("CUDA error: out of memory (injected)")
        return real_loss(model, batch)

    monkeypatch.setattr(evaluation, "evaluate_probes", probes)
    monkeypatch.setattr(ga, "ga_loss", loss)
    rows = runner.run_sweep(_params(methods=["ga"], eval_batch_size=16))
    assert seen["eval"] == [8, 4]  # training ran out first (16 -> 8, training batch 2 -> 1), then evaluation at 8
    assert seen["train"][:1] == [2] and set(seen["train"][1:]) == {1}
    assert "forget_all" in set(rows["metric"])
    info = results.read_result(results.stored("faults", "tiny-random", "ga", "full", 2))["info"]
    assert len(info["losses"]) == 1  # 2 texts, batch 1 with 2 accumulation steps: one optimizer step


def test_out_of_memory_at_batch_one_is_a_clear_error(tmp_store, rwku, monkeypatch):
    from rwku_nb.errors import RwkuError

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    monkeypatch.setattr(evaluation, "evaluate_probes", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")))
    with pytest.raises(RwkuError, match="out of device memory even with every batch at 1"):
        runner.run_sweep(_params(methods=["before"]))
    assert not list((tmp_store / "results").rglob("*.json"))


SWEEP = textwrap.dedent("""
    import json, sys
    from rwku_nb import runner
    runner.run_sweep(json.loads(sys.argv[1]))
""")


def test_killed_sweep_resumes_without_recomputing_or_losing_work(tmp_store, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    params = _params(methods=["before", "icu", "ga", "npo"],
                     hparams={m: {"full": {"lr": 1e-3, "epochs": 1, "batch_size": 2}} for m in ("ga", "npo")})
    store = tmp_store / "results" / "faults"
    proc = subprocess.Popen([sys.executable, "-c", SWEEP, json.dumps(params)], env=dict(os.environ))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(store.rglob("*.json")):
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed; give it more work"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {f: f.read_bytes() for f in store.rglob("*.json")}
    assert 1 <= len(done) < 4
    for f in done:  # every file left behind is whole
        assert results.read_result(f)["rows"]

    calls = []
    real = runner.run_job
    monkeypatch.setattr(runner, "run_job", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    rows = runner.run_sweep(params)
    assert len(calls) == 4 - len(done)  # only the unfinished jobs ran
    assert set(rows["method"]) == {"before", "icu", "ga", "npo"}  # none lost
    assert all(f.read_bytes() == data for f, data in done.items())  # finished work untouched
    assert not [p for p in store.rglob("*") if p.name.endswith(".tmp")]  # no partial files
