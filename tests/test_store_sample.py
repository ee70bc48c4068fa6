"""The committed results store of the CI profile (results/cpu-smoke/, which the notebooks and nbval read)
is complete, holds nothing the profile does not ask for, and is what the code computes: a sample of its
jobs is recomputed from scratch here (fresh store, fresh caches: the knowledge-injected model rebuilt, the
zero-shot corpus regenerated) and must give the committed files: every identity, setting, generated text,
probe score and curve point exactly, and the floating-point values that come from summing over a forward
pass (training losses, MIA means) equal to a relative 1e-4. `make notebooks` refreshes the store.

Why a tolerance: the store was computed with the CPU kernels pinned (Makefile PINNED, rwku_nb.jobs.AVX2_PINS),
and pinned, the same jobs recomputed on another CPU (an AVX-512 AMD EPYC, the store having been computed on
another machine of this kind) gave the same bytes for every prediction, probe score, utility score and curve
point, but training losses and MIA means differed from the 7th significant digit (worst 2.1e-5 relative:
Min-K%++ after GA, whose z-scores amplify the last bits); the same machine gives the same bytes with 1 or 2
threads. No table shows those digits (one decimal). Run on the machine that computed the store, the files
are byte-identical, and the test says which of the two it saw.

The identities are computed under the pins, and the sample is recomputed in a fresh process that runs with
them (they take effect when the kernels load)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import linked_cache
from rwku_nb import jobs, paths, store
from rwku_nb.config import load_profile
from rwku_nb.jobs import AVX2_PINS
from rwku_nb.paths import REPO_ROOT

COMMITTED = REPO_ROOT / "results"

# GA full on the injected model: knowledge injection, zero-shot corpus generation, training, the epoch curve
# point, then the final evaluation every Table 1 row gets (forget/neighbor probes, MIA, the utility sets).
SAMPLE = r"""
from rwku_nb import runner
from rwku_nb.config import load_profile
profile = load_profile("cpu-smoke")
runner.run_sweep({**profile, "methods": ["ga"], "variants": ["full"]})
"""
REL_TOL = 1e-4  # floats that sum over a forward pass, across CPUs (see the module docstring)


def _differences(want, got, where="") -> tuple[list[str], float]:
    """Where two parsed result files differ beyond REL_TOL for floats (exactly for everything else), and the
    largest relative difference of the floats that are not equal."""
    if isinstance(want, float) and isinstance(got, float):
        rel = abs(want - got) / max(abs(want), abs(got), 1e-12)
        return ([f"{where}: {want!r} != {got!r}"] if rel > REL_TOL else []), rel
    if isinstance(want, dict) and isinstance(got, dict) and want.keys() == got.keys():
        parts = [_differences(want[k], got[k], f"{where}.{k}") for k in want]
    elif isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        parts = [_differences(w, g, f"{where}[{i}]") for i, (w, g) in enumerate(zip(want, got))]
    else:
        return ([] if want == got and type(want) is type(got) else [f"{where}: {want!r} != {got!r}"]), 0.0
    return [d for ds, _ in parts for d in ds], max([r for _, r in parts], default=0.0)


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
    cache = linked_cache(tmp_path / "cache")  # the dequantized SmolLM2 only; injection and corpora run afresh
    # The store was computed with torch's 2 threads (2-core machines); reductions split by thread count.
    env = {**os.environ, **AVX2_PINS, paths.RESULTS_ENV: str(fresh), paths.CACHE_ENV: str(cache), "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", SAMPLE], env=env, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    recomputed = sorted(p.relative_to(fresh) for p in fresh.rglob("*.json"))
    # GA's final result and its one curve point (cpu-smoke trains GA for 2 epochs: epoch-1, then final)
    assert sorted(p.parts[-3:-1] for p in recomputed) == [("epoch-1", "ga-full"), ("single", "ga-full")], recomputed
    identical, worst = [], 0.0
    for p in recomputed:
        want, got = (COMMITTED / p).read_bytes(), (fresh / p).read_bytes()
        identical.append(want == got)
        differ, rel = _differences(json.loads(want), json.loads(got), str(p))
        assert not differ, f"recomputed results differ from the committed ones: {differ[:10]}"
        worst = max(worst, rel)
    print(f"store sample: {sum(identical)} of {len(identical)} files byte-identical; largest relative difference "
          f"of the others' floats {worst:.1e} (tolerance {REL_TOL:.0e})")
