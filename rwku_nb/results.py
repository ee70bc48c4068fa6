"""The results store: one atomically written JSON file per finished (method, variant, target).

Each file holds tidy rows (model, method, variant, target, metric, value, n), the per-probe
predictions and what the method recorded (e.g. training losses). A rerun skips finished files.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from .errors import RwkuError
from .paths import atomic_write_json, results_dir

COLUMNS = ["model", "method", "variant", "target_index", "target", "metric", "value", "n"]


def slug(text: str) -> str:
    """A file-name-safe form of a model id or name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def result_path(profile: str, model: str, method: str, variant: str, target_index: int) -> Path:
    """Where the result of one (model, method, variant, target) lives."""
    return results_dir(profile) / slug(model) / f"{method}-{variant}" / f"target_{target_index:03d}.json"


def save_result(path: Path, meta: dict, rows: list[dict], predictions: list[dict], info: dict) -> None:
    """Write one finished result (atomically: readers never see a partial file)."""
    atomic_write_json(path, {"meta": meta, "rows": rows, "predictions": predictions, "info": info})


def read_result(path: Path) -> dict:
    """One result file, with a clear error if it is not a result file."""
    try:
        data = json.loads(Path(path).read_text())
        assert {"meta", "rows", "predictions"} <= set(data)
    except (json.JSONDecodeError, AssertionError, UnicodeDecodeError):
        raise RwkuError(f"{path} is not an rwku_nb result file; delete it and rerun to recompute it.") from None
    return data


def load_rows(profile: str, model: str | None = None) -> pd.DataFrame:
    """All tidy rows of a profile's store (optionally one model), sorted for stable tables."""
    root = results_dir(profile)
    pattern = f"{slug(model)}/*/*.json" if model else "*/*/*.json"
    rows = [row for path in sorted(root.glob(pattern)) for row in read_result(path)["rows"]]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["model", "method", "variant", "target_index", "metric"], kind="stable").reset_index(drop=True)


def load_predictions(profile: str, model: str | None = None) -> pd.DataFrame:
    """Per-probe predictions of every stored result, one row per (method, variant, target, probe)."""
    root = results_dir(profile)
    pattern = f"{slug(model)}/*/*.json" if model else "*/*/*.json"
    frames = []
    for path in sorted(root.glob(pattern)):
        data = read_result(path)
        df = pd.DataFrame(data["predictions"])
        for key in ("model", "method", "variant", "target_index", "target"):
            df.insert(0, key, data["meta"][key])
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
