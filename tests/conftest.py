"""Shared fixtures: the RWKU sample, SmolLM2 (loaded once) and the tiny random model."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
# The tests use no network: an unreachable hub id then fails at once, not after a minute of retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rwku_nb import models  # noqa: E402
from rwku_nb.paths import DATA_ENV, REPO_ROOT  # noqa: E402


def sample_dir() -> Path | None:
    """The local RWKU sample ($RWKU_DATA or ../shared/rwku), or None."""
    env = os.environ.get(DATA_ENV, "").strip()
    path = Path(env) if env and env != "hub" else REPO_ROOT.parent / "shared" / "rwku"
    path = path if path.is_absolute() else REPO_ROOT / path
    return path.resolve() if (path / "Target").is_dir() else None


needs_data = pytest.mark.skipif(sample_dir() is None, reason="RWKU sample not found: set RWKU_DATA")


def linked_cache(cache: Path) -> Path:
    """A fresh cache directory `cache` in which only the dequantized SmolLM2 (also the tiny model's tokenizer)
    is linked from the user's cache, the one `make figures` uses (built there once if needed): a test or test
    process that built its own copy would spend ~30 s and write ~540 MB. Corpora and injected models stay
    isolated."""
    src = models.smollm2_dir()
    (cache / "models").mkdir(parents=True)
    (cache / "models" / src.name).symlink_to(src)
    return cache


@pytest.fixture(scope="session")
def rwku():
    from rwku_nb.data import RWKU

    if sample_dir() is None:
        pytest.skip("RWKU sample not found: set RWKU_DATA")
    return RWKU(sample_dir())


@pytest.fixture(scope="session")
def smol():
    """SmolLM2-135M-Instruct on CPU in fp32, shared by the session (do not train it)."""
    return models.load_model(models.SMOLLM2, device="cpu")


@pytest.fixture
def tiny():
    """A fresh tiny random model of SmolLM2's architecture (tests may change it)."""
    return models.load_model(models.TINY, device="cpu")


@pytest.fixture
def tmp_store(tmp_path, monkeypatch):
    """Isolated results, figures and cache directories."""
    from rwku_nb import paths

    monkeypatch.setenv(paths.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(paths.FIGURES_ENV, str(tmp_path / "figures"))
    monkeypatch.setenv(paths.CACHE_ENV, str(linked_cache(tmp_path / "cache")))
    return tmp_path
