"""What a profile's results store holds, and which of it the profile asks for; `--prune` removes the rest.

    python -m rwku_nb.store cpu-smoke            # list: per model, setting and method-variant
    python -m rwku_nb.store cpu-smoke --prune    # remove results no run of this profile would read

A file is asked for when a notebook run of the profile reads it: the identity hash in its name is one
of the profile's jobs (single-target sweep with its curve points, Before of the released model, partial
layers, batch-target, robustness with its attack points) or of its derived tables (memorization, ranking, notebook 07).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from . import injection, results, robustness, runner, seed0
from .config import load_profile, parse_overrides
from .errors import RwkuError
from .paths import results_dir, shown


def asked_for(params: dict) -> set[Path]:
    """The final-result paths and derived-table paths a run of the profile reads (curve points share
    their job's file name in another setting folder; `is_asked` matches them by name)."""
    profile, label = params["profile"], injection.model_label(params)
    planned = [(label, runner.sweep_jobs(params)), (label, runner.sweep_jobs(runner.layer_params(params), mia=False)),
               (label, runner.batch_jobs(params)), (label, robustness.robust_jobs(params))]
    if params["inject"]:  # notebook 01's Before rows of the model as released
        planned.append((params["model"], runner.sweep_jobs({**params, "methods": ["before"], "inject": None})))
    paths = {results.result_path(profile, model, job, t.index) for model, jobs in planned for job in jobs
             for t in job.targets}
    paths.add(results.cached_path(profile, label, "memorization", runner.memorization_key(params)))
    paths.add(results.cached_path(profile, params["model"], "ranking", runner.ranking_key(params)))
    paths.add(results.cached_path(profile, label, "selective-data", seed0._selective_key(params, data_only=True)))
    for m in params["selective_methods"]:
        for v in params["selective_variants"]:
            paths.add(results.cached_path(profile, label, f"selective-{m}-{v}",
                                          {**seed0._selective_key(params), "method": m, "variant": v}))
    return paths


def is_asked(path: Path, asked: set[Path]) -> bool:
    if path in asked:
        return True
    # a curve or attack point: <model>/<epoch-K|alpha-A|relearn-..|quant-B>/<method-variant>/<name> of a final
    # result <model>/single|robust/...
    return path.parent.parent.name != "analysis" and any(
        a.name == path.name and a.parent.name == path.parent.name and a.parents[2] == path.parents[2] for a in asked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rwku_nb.store", description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="params/<profile>.yaml, or a path to a profile YAML file")
    parser.add_argument("-y", "--overrides", default="{}", help="YAML mapping of profile keys the runs used")
    parser.add_argument("--prune", action="store_true", help="remove the files the profile does not ask for")
    args = parser.parse_args(argv)
    try:
        params = load_profile(args.profile, parse_overrides(args.overrides) or None)
        root = results_dir(params["profile"])
        asked = asked_for(params)
    except RwkuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))
    extra = [p for p in files if not is_asked(p, asked)]
    groups = Counter((p.relative_to(root).parts[0], "/".join(p.relative_to(root).parts[1:-1])) for p in files)
    unasked = Counter((p.relative_to(root).parts[0], "/".join(p.relative_to(root).parts[1:-1])) for p in extra)
    print(f"{shown(root)}: {len(files)} result files, {len(files) - len(extra)} asked for by the profile, "
          f"{len(extra)} not")
    for (model, where), n in sorted(groups.items()):
        print(f"  {model}  {where}: {n}" + (f" ({unasked[model, where]} not asked for)" if unasked[model, where] else ""))
    missing = [p for p in asked if not p.exists()]
    if missing:
        print(f"  {len(missing)} asked for but not computed yet (`make figures PROFILE={params['profile']}` "
              "computes them)")
    if args.prune:
        for p in extra:
            p.unlink()
        print(f"removed {len(extra)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
