"""Seeded CPU runs are byte-identical: the cpu-smoke profile, run twice in fresh processes with fresh
results stores and freshly generated forget corpora, writes the same result files and the same Table 1.

The two runs share only the built models (the dequantized SmolLM2 and its knowledge-injected version,
which the notebooks' run reuses). One method keeps the test to a few minutes (~2 per run on 2 cores).
"""
import os
import subprocess
import sys

from rwku_nb import paths, results, tables

# GA alone touches every seeded step: zero-shot corpus generation (sampling), training, evaluation.
OVERRIDES = "{methods: [ga], variants: [full], curve: false, utility: []}"


def _run(tmp, name: str) -> dict:
    """One cpu-smoke run in a fresh process; returns {result file: bytes}."""
    cache = tmp / name / "cache"
    cache.mkdir(parents=True)
    for built in ("models", "injected"):  # share built models, not the generated corpora
        (paths.cache_dir() / built).mkdir(exist_ok=True)
        (cache / built).symlink_to(paths.cache_dir() / built)
    env = {**os.environ, paths.RESULTS_ENV: str(tmp / name / "results"), paths.CACHE_ENV: str(cache),
           "TQDM_DISABLE": "1"}
    out = subprocess.run([sys.executable, "-m", "rwku_nb.sweep", "cpu-smoke", "--parts", "single", "-y", OVERRIDES],
                         env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    root = tmp / name / "results"
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*.json")}


def _table1_csv(tmp, name: str, monkeypatch) -> str:
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp / name / "results"))
    rows, preds = results.load_rows("cpu-smoke"), results.load_predictions("cpu-smoke")
    return tables.table1(rows, preds).to_csv()


def test_cpu_smoke_twice_gives_byte_identical_results(tmp_path, rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    first, second = _run(tmp_path, "first"), _run(tmp_path, "second")
    assert len(first) == 1 and first.keys() == second.keys()  # GA full on target 1
    assert [p for p in first if first[p] != second[p]] == []
    table = _table1_csv(tmp_path, "first", monkeypatch)
    assert "GA Full" in table and table == _table1_csv(tmp_path, "second", monkeypatch)


def test_a_different_seed_changes_the_results(tmp_path, rwku, monkeypatch):
    """The comparison above can fail: the seed reaches the generated corpus, hence the trained model."""
    from rwku_nb import runner
    from rwku_nb.config import load_profile

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    base = {"model": "tiny-random", "targets": "2", "methods": ["ga"], "variants": ["full"], "corpus_size": 2,
            "corpus_max_new_tokens": 8, "max_length": 32, "max_new_tokens": 4, "utility": [], "curve": False,
            "inject": None, "hparams": {"ga": {"full": {"lr": 1e-2, "epochs": 1, "batch_size": 2}}}}
    scores = []
    for seed in (0, 1):
        rows = runner.run_sweep(load_profile("cpu-smoke", {**base, "seed": seed, "profile": f"seed-{seed}"}))
        scores.append(rows.set_index("metric")["value"].filter(like="mia_").round(6).tolist())
    assert scores[0] != scores[1]
