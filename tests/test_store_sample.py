"""The committed results store of the CI profile (results/cpu-smoke/, which the notebooks and nbval read)
is complete, holds nothing the profile does not ask for, and is what the code computes: a sample of its
jobs is recomputed from scratch here (fresh store, fresh caches: the knowledge-injected model rebuilt, the
zero-shot corpus regenerated) and must give the committed files byte for byte. `make notebooks` refreshes it."""
import os

import pytest

from rwku_nb import paths, runner, store
from rwku_nb.config import load_profile
from rwku_nb.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "results"
PINS = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


@pytest.fixture
def cpu_smoke(rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    monkeypatch.setenv(paths.RESULTS_ENV, str(COMMITTED))
    return load_profile("cpu-smoke")


def test_committed_store_is_exactly_what_the_ci_profile_asks_for(cpu_smoke):
    asked = store.asked_for(cpu_smoke)
    missing = sorted(str(p.relative_to(COMMITTED)) for p in asked if not p.exists())
    assert not missing, f"not in the committed store (run `make notebooks`): {missing}"
    files = [p for p in (COMMITTED / "cpu-smoke").rglob("*") if p.is_file()]
    extra = sorted(str(p.relative_to(COMMITTED)) for p in files if not store.is_asked(p, asked))
    assert not extra, f"asked for by no run of cpu-smoke (`python -m rwku_nb.store cpu-smoke --prune`): {extra}"


def test_sample_jobs_recomputed_from_scratch_equal_the_committed_bytes(cpu_smoke, tmp_path, monkeypatch):
    missing = [k for k in PINS if not os.environ.get(k)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not set: the committed store was computed with the kernels pinned; "
                    "run the tests through `make unit`", pytrace=False)
    fresh = tmp_path / "results"
    monkeypatch.setenv(paths.RESULTS_ENV, str(fresh))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(paths.cache_dir() / "models")  # the dequantized SmolLM2 only
    monkeypatch.setenv(paths.CACHE_ENV, str(cache))
    # Before on the released model: forget/neighbor probes, MIA and the utility sets.
    runner.run_sweep({**cpu_smoke, "methods": ["before"], "inject": None})
    # GA full on the injected model: injection, zero-shot corpus generation, training, the epoch curve points.
    runner.run_sweep({**cpu_smoke, "methods": ["ga"], "variants": ["full"]})
    recomputed = sorted(p.relative_to(fresh) for p in fresh.rglob("*.json"))
    assert len(recomputed) == 4  # before; GA single, epoch-1, epoch-2
    differ = [str(p) for p in recomputed if (COMMITTED / p).read_bytes() != (fresh / p).read_bytes()]
    assert not differ, f"recomputed results differ from the committed ones: {differ}"
