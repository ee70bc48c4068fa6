"""The content-addressed results store: a changed setting computes a new result, an unchanged one is reused,
a corrupted file is set aside and recomputed, and derived tables are keyed by data content, not paths."""
import json
import shutil
import warnings

import pytest

from rwku_nb import jobs, results, runner, seed0, store
from rwku_nb.config import make_params

# The steps, on the tiny model: before + GA full on target 1, MMLU only (2 items).
BASE = {"profile": "store-test", "model": "tiny-random", "inject": [], "targets": "1", "methods": ["before", "ga"],
        "variants": ["full"], "curve": False, "utility": ["mmlu"], "utility_size": 2, "corpus_size": 2,
        "corpus_max_new_tokens": 8, "max_new_tokens": 4, "max_length": 32, "warmup_steps": 0,
        "hparams": {"ga": {"full": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}}


@pytest.fixture
def counted(monkeypatch):
    """The (method, setting) of every job run_job is asked to run."""
    calls = []
    real = runner.run_job
    monkeypatch.setattr(runner, "run_job", lambda *a, **k: calls.append((a[3].method, a[3].setting)) or real(*a, **k))
    return calls


def _ga(rows):
    return rows.query("method == 'ga'").set_index("metric")["value"]


def test_changed_lr_recomputes_and_only_eval_batch_size_reuses(tmp_store, rwku, monkeypatch, counted):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    first = runner.run_sweep(BASE)
    assert counted == [("before", "single"), ("ga", "single")]
    faster = {**BASE, "hparams": {"ga": {"full": {"lr": 0.5, "epochs": 2, "batch_size": 2}}}}
    second = runner.run_sweep(faster)
    assert counted[2:] == [("ga", "single")]  # GA recomputed, Before (no hparams) reused
    assert (_ga(first) != _ga(second)).any()  # and the table shows the new learning rate's numbers
    assert runner.run_sweep({**BASE, "eval_batch_size": 3, "mia_batch_size": 1}).equals(first)
    assert len(counted) == 3  # batch sizes cannot change a number: nothing rerun
    assert runner.run_sweep(BASE).equals(first)  # both results stay on disk; each run reads its own
    files = sorted((tmp_store / "results" / "store-test").rglob("target_001-*.json"))
    assert len(files) == 3
    stored = json.loads(results.stored("store-test", "tiny-random", "before", "none", 1).read_text())
    assert stored["identity"]["evaluation"]["utility"] == ["mmlu"] and "eval_batch_size" not in json.dumps(stored["identity"])


def test_a_truncated_result_is_set_aside_and_recomputed(tmp_store, rwku, monkeypatch, counted):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    first = runner.run_sweep(BASE)
    path = results.stored("store-test", "tiny-random", "ga", "full", 1)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # as by a copy that did not finish
    with pytest.warns(UserWarning, match=r"target_001-\w+\.json is not a complete rwku_nb result file; moved aside"):
        again = runner.run_sweep(BASE)
    assert counted[-1] == ("ga", "single") and len(counted) == 3
    assert path.read_bytes() == good and again.equals(first)  # recomputed, the same bytes (seeded)
    assert path.with_name(path.name + ".corrupt").read_bytes() == good[: len(good) // 2]


def test_a_result_lacking_a_required_metric_is_set_aside_and_recomputed(tmp_store, rwku, monkeypatch, counted):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    first = runner.run_sweep(BASE)
    path = results.stored("store-test", "tiny-random", "ga", "full", 1)
    good = json.loads(path.read_text())
    # as a result written by code that measured no utility: readable JSON, but not complete for this identity
    partial = {**good, "rows": [r for r in good["rows"] if r["metric"] != "utility_mmlu"]}
    path.write_text(json.dumps(partial))
    with pytest.warns(UserWarning, match=r"target_001-\w+\.json lacks the metric\(s\) utility_mmlu; moved aside"):
        again = runner.run_sweep(BASE)
    assert counted[-1] == ("ga", "single") and len(counted) == 3  # only GA recomputed
    assert json.loads(path.read_text()) == good and again.equals(first)


def test_identity_holds_what_shapes_the_numbers_and_nothing_else(rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    [target] = __import__("rwku_nb.data", fromlist=["RWKU"]).RWKU(str(rwku.root)).select("1")

    def key(method, **kw):
        p = make_params({**BASE, "methods": [method], **kw})
        return jobs.make_job(p, "tiny-random", [target], method, "full" if method != "before" else "none",
                             "single", True).key

    assert key("npo", npo_beta=0.5) != key("npo") and key("ga", npo_beta=0.5) == key("ga")
    assert key("repe", repe_layer=1) != key("repe")
    from rwku_nb.methods import METHODS

    before_templates = key("repe")  # a method's fixed prompt templates are part of its identity
    monkeypatch.setitem(METHODS["repe"].constants, "novice", "You know nothing about {target}.")
    assert key("repe") != before_templates  # (restored after the test)
    assert key("ga", corpus_size=3) != key("ga") and key("before", corpus_size=3) == key("before")
    assert key("ga", stop="official") != key("ga") and key("ga", utility_size=3) != key("ga")
    assert key("ga", seed=1) != key("ga") and key("ga", warmup_steps=2) != key("ga")
    for cannot in ({"eval_batch_size": 1}, {"mia_batch_size": 1}, {"utility_batch_size": 1}, {"profile": "other"}):
        assert key("ga", **cannot) == key("ga"), cannot


def test_selective_tables_are_keyed_by_data_content_not_path(rwku, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(rwku.root, copy)
    p = {"model": "tiny-random", "selective_data": "rwku", "selective_unseen": "heldout", "targets": "1"}
    here = seed0._selective_key(make_params({**p, "data": str(rwku.root)}))
    assert seed0._selective_key(make_params({**p, "data": str(copy)})) == here
    probes = next(copy.rglob("1_*")) / "forget_level1.json"
    rows = json.loads(probes.read_text())
    rows[0]["answer"] += " changed"
    probes.write_text(json.dumps(rows))
    assert seed0._selective_key(make_params({**p, "data": str(copy)})) != here


def test_a_corrupt_derived_table_is_recomputed(tmp_store):
    calls = []

    def compute():
        calls.append(1)
        return __import__("pandas").DataFrame({"a": [1, 2]})

    first = results.cached_frame("store-test", "m", "t", {"k": 1}, compute)
    [path] = (tmp_store / "results" / "store-test" / "m" / "analysis").glob("t-*.json")
    path.write_text("{")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = results.cached_frame("store-test", "m", "t", {"k": 1}, compute)
    assert len(calls) == 2 and again.equals(first) and "moved aside" in str(caught[0].message)


def test_store_lists_and_prunes_what_no_profile_asks_for(tmp_store, rwku, monkeypatch, capsys):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    runner.run_sweep(BASE)
    runner.run_sweep({**BASE, "hparams": {"ga": {"full": {"lr": 0.5, "epochs": 1, "batch_size": 2}}}})
    profile = tmp_store / "store-test.yaml"
    profile.write_text(json.dumps({**BASE, "batch_targets": [1], "batch_sizes": [1], "layer_windows": [[0, 1]]}))
    assert store.main([str(profile)]) == 0
    out = capsys.readouterr().out
    assert "3 result files, 2 asked for by the profile, 1 not" in out and "ga-full" in out
    assert store.main([str(profile), "--prune"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert len(list((tmp_store / "results" / "store-test").rglob("target_*.json"))) == 2
    assert runner.run_sweep(BASE)["method"].nunique() == 2


def test_cpu_kernel_pins_are_part_of_the_identity(rwku, monkeypatch):
    """Pinned (the CI profile's committed store) and unpinned kernels give different last digits, so neither
    run may reuse the other's results; the injected model's key changes with them too."""
    from rwku_nb import injection

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    for name in jobs.KERNEL_PINS:
        monkeypatch.delenv(name, raising=False)
    params = make_params(BASE)
    unpinned = [job.key for job in runner.sweep_jobs(params)]
    smoke = make_params({**BASE, "model": "smollm2-135m-instruct", "inject": [1]})
    unpinned_label = injection.model_label(smoke)
    for name, value in jobs.AVX2_PINS.items():
        monkeypatch.setenv(name, value)
    pinned = [job.key for job in runner.sweep_jobs(params)]
    assert len(pinned) == 2 and not set(pinned) & set(unpinned)
    assert runner.sweep_jobs(params)[0].identity["kernels"] == jobs.AVX2_PINS
    assert injection.model_label(smoke) != unpinned_label
    assert [job.key for job in runner.sweep_jobs({**params, "device": "cpu"})] == pinned  # deterministic


def test_a_local_model_directory_is_identified_by_its_content_not_its_path(rwku, tmp_path, monkeypatch, tiny):
    """A checkpoint unlearned elsewhere and saved again into the same directory must not reuse the results
    of the old one; the same files (saved again, or copied elsewhere) are the same model."""
    import torch

    from rwku_nb import injection

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    model, tok = tiny
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)

    def keys(path):
        p = make_params({**BASE, "model": str(path)})
        return [job.key for job in runner.sweep_jobs(p)], injection.settings({**p, "inject": [1]})["weights"]

    first, weights = keys(ckpt)
    assert weights == runner.sweep_jobs(make_params({**BASE, "model": str(ckpt)}))[0].identity["weights"]
    shutil.copytree(ckpt, tmp_path / "copy")
    model.save_pretrained(ckpt)  # the same weights written again: new mtimes, same content
    assert keys(ckpt) == (first, weights) and keys(tmp_path / "copy")[1] == weights
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(ckpt)
    changed, changed_weights = keys(ckpt)
    assert changed_weights != weights and not set(changed) & set(first)
    assert "weights" not in runner.sweep_jobs(make_params(BASE))[0].identity  # an alias is named by its id


def test_a_result_setting_is_written_and_read_in_one_place():
    from rwku_nb.jobs import Point

    for name, point in [("single", Point("single")), ("batch-2", Point("batch", 2)), ("epoch-3", Point("epoch", 3)),
                        ("alpha-0.5", Point("alpha", 0.5)), ("alpha-1", Point("alpha", 1.0)), ("robust", Point("robust")),
                        ("quant-4", Point("quant", 4)), ("relearn-forget-2", Point("relearn", 2, "forget"))]:
        assert point.name == name and Point.parse(name) == point
    assert jobs.experiment_of("batch-10") == "batch" and jobs.experiment_of("single") == "single"
    for bad in ("batch", "epoch-x", "relearn-2", "singles"):
        with pytest.raises(ValueError, match="not a result setting"):
            Point.parse(bad)
