"""Every location rwku_nb reads or writes, in one place; each is overridable by an environment variable."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from platformdirs import user_cache_dir

from .errors import RwkuError

REPO_ROOT = Path(__file__).resolve().parent.parent

# RWKU_DATA: a local directory in the official layout (holding Target/<N>_<Name>/*.json) or the
# literal "hub" to read `jinzhuoran/RWKU` through `datasets`. Profiles may also name it.
DATA_ENV = "RWKU_DATA"
# Where dequantized models, generated corpora and injected models are cached (built once per machine).
CACHE_ENV = "RWKU_NB_CACHE"
# Where tables and figures go; the committed figures/ is what `make figures` produced.
FIGURES_ENV = "RWKU_NB_FIGURES"
# Where per-job result files go (results/<profile>/, the CI profile's committed); a rerun reuses exact matches.
RESULTS_ENV = "RWKU_NB_RESULTS"
# The Pile extraction subsets and validation texts of the seed-0 paper (default: ../shared/extraction).
EXTRACTION_ENV = "RWKU_NB_EXTRACTION"


def writable_dir(path: Path, env: str, what: str) -> Path:
    """`path`, created if needed; an RwkuError naming it and `env` (the variable that moves it) when it
    cannot be created or is not writable, before anything is written there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a regular file in the way, no permission, read-only file system
        raise RwkuError(f"The {what} directory {path} cannot be created ({e.strerror or e}). Set {env} to a "
                        f"writable directory (export {env}=/path/to/dir).") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RwkuError(f"The {what} directory {path} is not writable. Set {env} to a writable directory "
                        f"(export {env}=/path/to/dir).")
    return path


def cache_dir() -> Path:
    """The user cache directory of rwku_nb (created on first use)."""
    return writable_dir(Path(os.environ.get(CACHE_ENV) or user_cache_dir("rwku_nb")), CACHE_ENV, "cache")


def extraction_dir() -> Path:
    """Directory of the extraction data (lm_extraction_*.csv, valid_wikitext.csv)."""
    return Path(os.environ.get(EXTRACTION_ENV) or REPO_ROOT.parent / "shared" / "extraction")


def figures_dir() -> Path:
    """Directory for tables and figures (created on first use)."""
    return writable_dir(Path(os.environ.get(FIGURES_ENV) or REPO_ROOT / "figures"), FIGURES_ENV, "figures")


def results_dir(profile: str) -> Path:
    """Directory of the results store of one profile (created on first use)."""
    root = Path(os.environ.get(RESULTS_ENV) or REPO_ROOT / "results")
    return writable_dir(root / profile, RESULTS_ENV, "results")


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj) -> None:
    """`atomic_write_text` of `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def shown(path: Path) -> str:
    """A path as notebooks print it: relative to the repository when inside it (stable across clones)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
