"""Seeded CPU runs are byte-identical: the cpu-smoke profile's sweep structure on the tiny random model, run
twice in fresh processes with fresh results stores and freshly generated forget corpora, writes the same
result files and the same Table 1. (On SmolLM2 itself, tests/test_store_sample.py recomputes committed jobs
from scratch and requires their bytes, which also covers determinism across processes and machines.)
"""
import os
import subprocess
import sys

import yaml

from conftest import linked_cache
from rwku_nb import paths, results, runner, tables
from rwku_nb.config import load_profile

# GA alone touches every seeded step: zero-shot corpus generation (sampling), training, evaluation, MIA and
# a utility set; the tiny model and small sizes keep each run to seconds.
OVERRIDES = ("{model: tiny-random, inject: [], methods: [ga], variants: [full], curve: false, corpus_size: 2, "
             "corpus_max_new_tokens: 16, max_new_tokens: 8, utility: [mmlu], utility_size: 2}")


def _run(tmp, name: str) -> dict:
    """One cpu-smoke run in a fresh process; returns {result file: bytes}."""
    cache = linked_cache(tmp / name / "cache")  # the tokenizer; not the generated corpora
    env = {**os.environ, paths.RESULTS_ENV: str(tmp / name / "results"), paths.CACHE_ENV: str(cache),
           "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-m", "rwku_nb.sweep", "cpu-smoke", "--parts", "single", "-y", OVERRIDES],
                         env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    root = tmp / name / "results"
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*.json")}


def _table1_csv(tmp, name: str, monkeypatch) -> str:
    """Table 1 of a run, read back from its store (every job found there, nothing recomputed)."""
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp / name / "results"))
    params = load_profile("cpu-smoke", yaml.safe_load(OVERRIDES))
    jobs = runner.sweep_jobs(params)
    assert all(results.is_finished("cpu-smoke", jobs[0].identity["model"], job) for job in jobs)
    return tables.table1(runner.run_sweep(params), runner.sweep_predictions(params)).to_csv()


def test_cpu_smoke_structure_twice_gives_byte_identical_results(tmp_path, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    first, second = _run(tmp_path, "first"), _run(tmp_path, "second")
    assert len(first) == 1 and first.keys() == second.keys()  # GA full on target 1
    assert [p for p in first if first[p] != second[p]] == []
    table = _table1_csv(tmp_path, "first", monkeypatch)
    assert "GA Full" in table and table == _table1_csv(tmp_path, "second", monkeypatch)


def test_a_different_seed_changes_the_results(tmp_path, rwku, monkeypatch):
    """The comparison above can fail: the seed reaches the generated corpus, hence the trained model."""
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(paths.CACHE_ENV, str(linked_cache(tmp_path / "cache")))
    base = {"model": "tiny-random", "targets": "2", "methods": ["ga"], "variants": ["full"], "corpus_size": 2,
            "corpus_max_new_tokens": 8, "max_length": 32, "max_new_tokens": 4, "utility": [], "curve": False,
            "inject": None, "hparams": {"ga": {"full": {"lr": 1e-2, "epochs": 1, "batch_size": 2}}}}
    scores = []
    for seed in (0, 1):
        rows = runner.run_sweep(load_profile("cpu-smoke", {**base, "seed": seed, "profile": f"seed-{seed}"}))
        scores.append(rows.set_index("metric")["value"].filter(like="mia_").round(6).tolist())
    assert scores[0] != scores[1]
