"""The committed results store of the CI profile (results/cpu-smoke/, which the notebooks and nbval read)
is complete, holds nothing the profile does not ask for, and is what the code computes: a sample of its
jobs is recomputed from scratch here (fresh store, fresh caches: the knowledge-injected model rebuilt, the
zero-shot corpus regenerated) and must give the committed files byte for byte. `make notebooks` refreshes it.

The store was computed with the CPU kernels pinned (Makefile PINNED, rwku_nb.jobs.AVX2_PINS), which is part
of each result's identity: the identities are computed under those pins, and the sample is recomputed in a
fresh process that runs with them (they take effect when the kernels load)."""
import os
import subprocess
import sys

import pytest

from rwku_nb import jobs, models, paths, store
from rwku_nb.config import load_profile
from rwku_nb.jobs import AVX2_PINS
from rwku_nb.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "results"

# Before on the released model (forget/neighbor probes, MIA, the utility sets), then GA full on the injected
# model (injection, zero-shot corpus generation, training, the epoch curve points).
SAMPLE = r"""
from rwku_nb import runner
from rwku_nb.config import load_profile
profile = load_profile("cpu-smoke")
runner.run_sweep({**profile, "methods": ["before"], "inject": None})
runner.run_sweep({**profile, "methods": ["ga"], "variants": ["full"]})
"""


@pytest.fixture
def cpu_smoke(rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    monkeypatch.setenv(paths.RESULTS_ENV, str(COMMITTED))
    # The identities under the pins, without pinning this process: ATen reads ATEN_CPU_CAPABILITY once, at its
    # first kernel, so setting it here would pin every later test of the session (and bf16 matmuls on an
    # AVX-512 CPU then fail: "pack_vnni2 is only supported when avx512 is supported").
    monkeypatch.setattr(jobs, "cpu_kernels", lambda: dict(AVX2_PINS))
    return load_profile("cpu-smoke")


def test_committed_store_is_exactly_what_the_ci_profile_asks_for(cpu_smoke):
    asked = store.asked_for(cpu_smoke)
    missing = sorted(str(p.relative_to(COMMITTED)) for p in asked if not p.exists())
    assert not missing, f"not in the committed store (run `make notebooks`): {missing}"
    files = [p for p in (COMMITTED / "cpu-smoke").rglob("*") if p.is_file()]
    extra = sorted(str(p.relative_to(COMMITTED)) for p in files if not store.is_asked(p, asked))
    assert not extra, f"asked for by no run of cpu-smoke (`python -m rwku_nb.store cpu-smoke --prune`): {extra}"


def test_sample_jobs_recomputed_from_scratch_equal_the_committed_bytes(cpu_smoke, tmp_path):
    fresh = tmp_path / "results"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(models.smollm2_dir().parent)  # the dequantized SmolLM2 only (built if needed)
    # The store was computed with torch's 2 threads (2-core machines); reductions split by thread count.
    env = {**os.environ, **AVX2_PINS, paths.RESULTS_ENV: str(fresh), paths.CACHE_ENV: str(cache), "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", SAMPLE], env=env, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    recomputed = sorted(p.relative_to(fresh) for p in fresh.rglob("*.json"))
    # Before; GA's final result and its one curve point (cpu-smoke trains GA for 2 epochs: epoch-1, then final)
    assert sorted(p.parts[-3:-1] for p in recomputed) == [("epoch-1", "ga-full"), ("single", "before-none"),
                                                        ("single", "ga-full")], recomputed
    differ = [str(p) for p in recomputed if (COMMITTED / p).read_bytes() != (fresh / p).read_bytes()]
    assert not differ, f"recomputed results differ from the committed ones: {differ}"
