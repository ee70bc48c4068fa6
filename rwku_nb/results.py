"""The results store: one atomically written JSON file per finished (method, variant, target).

Each file holds tidy rows (model, setting, method, variant, target, metric, value, n), the per-probe
predictions and what the method recorded (e.g. training losses). A rerun skips finished files.
Settings: "single" (single-target, Table 1), "epoch-K" (a single-target run evaluated after epoch K, for
trade-off curves), "alpha-A" (RepE with weight A), "batch-N" (N targets unlearned at once).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd

from .errors import RwkuError
from .paths import atomic_write_json, results_dir

COLUMNS = ["model", "setting", "method", "variant", "target_index", "target", "metric", "value", "n"]
SINGLE = "single"


def slug(text: str) -> str:
    """A file-name-safe form of a model id or name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def result_path(profile: str, model: str, method: str, variant: str, target_index: int,
                setting: str = SINGLE) -> Path:
    """Where the result of one (model, setting, method, variant, target) lives."""
    return results_dir(profile) / slug(model) / setting / f"{method}-{variant}" / f"target_{target_index:03d}.json"


def save_result(path: Path, meta: dict, rows: list[dict], predictions: list[dict], info: dict) -> None:
    """Write one finished result (atomically: readers never see a partial file)."""
    atomic_write_json(path, {"meta": meta, "rows": rows, "predictions": predictions, "info": info})


def read_result(path: Path) -> dict:
    """One result file, with a clear error if it is not a result file."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not (isinstance(data, dict) and {"meta", "rows", "predictions"} <= set(data)):
        raise RwkuError(f"{path} is not an rwku_nb result file; delete it and rerun to recompute it.")
    return data


def is_finished(path: Path, metrics: set[str] = frozenset()) -> bool:
    """Whether a result exists and holds every metric in `metrics` (a diverged run counts as finished):
    a result stored before the profile asked for more (e.g. utility sets) is recomputed."""
    if not path.exists():
        return False
    stored = {row["metric"] for row in read_result(path)["rows"]}
    return "diverged" in stored or metrics <= stored


def cached_frame(profile: str, model: str, name: str, key: dict, compute) -> pd.DataFrame:
    """A derived table (e.g. notebook 01's memorization rows) computed once per (profile, model, `key`)
    and stored beside the results (`<model>/analysis/<name>-<hash>.json`); `compute()` makes it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = results_dir(profile) / slug(model) / "analysis" / f"{slug(name)}-{digest}.json"
    if path.exists():
        data = json.loads(path.read_text())
        df = pd.DataFrame(data["rows"], columns=data["columns"])
        return df.set_index(data["index"]) if data["index"] else df
    df = compute()
    index = df.index.name
    flat = df.reset_index() if index else df
    atomic_write_json(path, {"key": key, "index": index, "columns": list(flat.columns),
                             "rows": flat.to_dict("records")})
    return df


def load_rows(profile: str, model: str | None = None) -> pd.DataFrame:
    """All tidy rows of a profile's store (optionally one model), sorted for stable tables."""
    rows = [row for path in _files(profile, model) for row in read_result(path)["rows"]]
    df = pd.DataFrame(rows, columns=COLUMNS)
    order = ["model", "setting", "method", "variant", "target_index", "metric"]
    return df.sort_values(order, kind="stable").reset_index(drop=True)


def _files(profile: str, model: str | None) -> list[Path]:
    return sorted(results_dir(profile).glob(f"{slug(model) if model else '*'}/*/*/*.json"))


def load_predictions(profile: str, model: str | None = None) -> pd.DataFrame:
    """Per-probe predictions of every stored result, one row per (method, variant, target, probe)."""
    frames = []
    for path in _files(profile, model):
        data = read_result(path)
        df = pd.DataFrame(data["predictions"])
        for key in ("model", "setting", "method", "variant", "target_index", "target"):
            df.insert(0, key, data["meta"][key])
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
