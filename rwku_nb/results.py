"""The results store: one atomically written JSON file per finished job and evaluated target.

Each file holds the job's identity (rwku_nb.jobs: everything that shaped its numbers, in readable form),
tidy rows (model, setting, method, variant, target, metric, value, n), the per-probe predictions and what
the method recorded (e.g. training losses). It is named by the identity's hash, so a rerun reuses exact
matches only; a corrupted or half-written file is moved aside (`*.corrupt`) with a warning and recomputed.
Settings: "single" (single-target, Table 1), "epoch-K" (a single-target run evaluated after epoch K, for
trade-off curves), "alpha-A" (RepE with weight A), "batch-N" (N targets unlearned at once).
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pandas as pd

from .errors import RwkuError
from .evaluation import missing_metrics
from .jobs import METRIC_VERSION, SINGLE, Job, digest
from .paths import atomic_write_json, results_dir, shown

COLUMNS = ["model", "setting", "method", "variant", "target_index", "target", "metric", "value", "n"]


def slug(text: str) -> str:
    """A file-name-safe form of a model id or name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def job_dir(profile: str, model: str, setting: str, method: str, variant: str) -> Path:
    return results_dir(profile) / slug(model) / setting / f"{method}-{variant}"


def result_path(profile: str, model: str, job: Job, target_index: int, setting: str | None = None) -> Path:
    """Where the result of `job` for one target lives (`setting`: a curve point's, else the job's own)."""
    return job_dir(profile, model, setting or job.setting, job.method, job.variant) / \
        f"target_{target_index:03d}-{job.key}.json"


def save_result(path: Path, identity: dict, meta: dict, rows: list[dict], predictions: list[dict],
                info: dict) -> None:
    """Write one finished result (atomically: readers never see a partial file)."""
    atomic_write_json(path, {"identity": identity, "meta": meta, "rows": rows, "predictions": predictions,
                             "info": info})


def read_result(path: Path) -> dict | None:
    """One result file, or None (with the file moved aside and a one-line warning) if it is not a complete
    result file: a crash mid-write elsewhere, a truncated copy, a hand edit."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict) and {"identity", "meta", "rows", "predictions"} <= set(data):
        return data
    quarantine(path, "is not a complete rwku_nb result file")
    return None


def quarantine(path: Path, why: str) -> None:
    """Move a bad stored file aside to `<name>.corrupt` (kept for inspection) so that it is recomputed."""
    path = Path(path)
    aside = path.with_name(path.name + ".corrupt")
    path.replace(aside)
    warnings.warn(f"{shown(path)} {why}; moved aside to {aside.name}, recomputing it.", stacklevel=3)


def is_finished(profile: str, model: str, job: Job) -> bool:
    """Whether every target of `job` has its final result, readable and holding every metric the registry
    requires of it (rwku_nb.evaluation; a diverged run holds none); curve points are written before it. A
    result that lacks one is moved aside with a warning and recomputed."""
    for t in job.targets:
        path = result_path(profile, model, job, t.index)
        data = read_result(path) if path.exists() else None
        if data is None:
            return False
        missing = [] if data["meta"].get("diverged") else missing_metrics(job.identity, data["rows"])
        if missing:
            quarantine(path, f"lacks the metric(s) {', '.join(missing)}")
            return False
    return True


def job_files(profile: str, model: str, job: Job) -> list[Path]:
    """Every stored file of `job` (its final results and curve points), sorted."""
    wanted = {f"target_{t.index:03d}-{job.key}.json" for t in job.targets}
    root = results_dir(profile) / slug(model)
    return sorted(p for p in root.glob(f"*/{job.method}-{job.variant}/target_*-{job.key}.json") if p.name in wanted)


def stored(profile: str, model: str, method: str, variant: str, target_index: int, setting: str = SINGLE) -> Path:
    """The one stored result of (model, setting, method, variant, target), whatever its identity: for a
    look at a file by hand. An RwkuError if there is none, or several (results of different settings)."""
    found = sorted(job_dir(profile, model, setting, method, variant).glob(f"target_{target_index:03d}-*.json"))
    if len(found) != 1:
        raise RwkuError(f"{len(found)} stored results of {method} {variant} target {target_index} ({setting}) in "
                        f"{shown(results_dir(profile) / slug(model))}; expected one. `python -m rwku_nb.store "
                        f"{profile}` lists them.")
    return found[0]


def cached_path(profile: str, model: str, name: str, key: dict) -> Path:
    """Where `cached_frame` stores the table `name` of `key`."""
    key = {**key, "metric_version": METRIC_VERSION}
    return results_dir(profile) / slug(model) / "analysis" / f"{slug(name)}-{digest(key)}.json"


def cached_frame(profile: str, model: str, name: str, key: dict, compute) -> pd.DataFrame:
    """A derived table (e.g. notebook 01's memorization rows) computed once per (profile, model, `key`)
    and stored beside the results (`<model>/analysis/<name>-<hash>.json`); `compute()` makes it. `key`
    must hold everything that shapes the table (data digests, not paths); the metric version is added."""
    key = {**key, "metric_version": METRIC_VERSION}
    path = cached_path(profile, model, name, key)
    if path.exists():
        try:
            data = json.loads(path.read_text())
            df = pd.DataFrame(data["rows"], columns=data["columns"])
            return df.set_index(data["index"]) if data["index"] else df
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            quarantine(path, "is not a complete rwku_nb table")
    df = compute()
    index = df.index.name
    flat = df.reset_index() if index else df
    atomic_write_json(path, {"key": key, "index": index, "columns": list(flat.columns),
                             "rows": flat.to_dict("records")})
    return df


def load_rows(profile: str, model: str, jobs: list[Job]) -> pd.DataFrame:
    """The tidy rows of `jobs` (final results and curve points), sorted for stable tables."""
    rows = [row for data in _read_all(profile, model, jobs) for row in data["rows"]]
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = ["model", "setting", "method", "variant", "target_index", "metric"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def load_predictions(profile: str, model: str, jobs: list[Job]) -> pd.DataFrame:
    """Per-probe predictions of `jobs`, one row per (setting, method, variant, target, probe)."""
    frames = []
    for data in _read_all(profile, model, jobs):
        df = pd.DataFrame(data["predictions"])
        for key in ("model", "setting", "method", "variant", "target_index", "target"):
            df.insert(0, key, data["meta"][key])
        frames.append(df)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    order = ["model", "setting", "method", "variant", "target_index"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def _read_all(profile: str, model: str, jobs: list[Job]) -> list[dict]:
    out = []
    for job in jobs:
        for path in job_files(profile, model, job):
            data = read_result(path)
            if data is None:
                raise RuntimeError(f"{shown(path)} was corrupt after the run that wrote it; rerun.")
            out.append(data)
    return out
