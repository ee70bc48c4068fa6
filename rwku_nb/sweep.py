"""Run a profile's sweeps from the command line, e.g. on several GPUs through `accelerate launch`:

    accelerate launch --config_file params/accelerate/multi_gpu.yaml -m rwku_nb.sweep gpu-llama3-8b

Every process takes its share of the jobs (rwku_nb.distributed) and writes to the profile's results store;
`make figures PROFILE=...` then builds the tables and figures from that store without recomputing.
Parts: single (Table 1 sweep), batch (batch-target), layers (partial-layer), selective (notebook 07).
"""
from __future__ import annotations

import argparse
import sys

from . import distributed, runner, seed0
from .config import load_profile, parse_overrides
from .errors import RwkuError

PARTS = {"single": runner.run_sweep, "batch": runner.run_batch, "layers": runner.run_layers,
         "selective": seed0.run_selective}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rwku_nb.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="params/<profile>.yaml, or a path to a profile YAML file")
    parser.add_argument("--parts", default="single,batch,layers",
                        help=f"comma-separated, of {', '.join(PARTS)} (default: single,batch,layers)")
    parser.add_argument("-y", "--overrides", default="{}", help="YAML mapping of profile keys, e.g. \"{targets: '1-8'}\"")
    args = parser.parse_args(argv)
    try:
        parts = [p.strip() for p in args.parts.split(",") if p.strip()]
        unknown = [p for p in parts if p not in PARTS]
        if unknown or not parts:
            raise RwkuError(f"--parts {args.parts!r}: unknown part(s) {unknown}; expected some of {list(PARTS)}.")
        params = load_profile(args.profile, parse_overrides(args.overrides))
        rank, size = distributed.world()
        for part in parts:
            rows = PARTS[part](params)
            if rank == 0:
                print(f"{part}: {len(rows)} rows in the results store of profile {params['profile']} "
                      f"({size} process{'es' if size > 1 else ''})", flush=True)
    except RwkuError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
