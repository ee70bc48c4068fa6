"""Committed notebooks as a JupyterLab user opens them: `make notebooks` executes them with papermill, which
adds an `injected-parameters` cell after the `parameters` cell; left in, it would silently override what a
user types into the parameters cell. `strip` folds the injected values into the parameters cell instead.

    python -m rwku_nb.nbtools strip notebooks/*.ipynb
"""
from __future__ import annotations

import re
import sys

import nbformat

INJECTED = "injected-parameters"


def strip_injected(path) -> bool:
    """Remove papermill's injected-parameters cell of a notebook, writing its assignments into the
    parameters cell (same names replaced in place); True if the notebook changed."""
    nb = nbformat.read(path, as_version=4)
    injected = [c for c in nb.cells if INJECTED in c.metadata.get("tags", [])]
    if not injected:
        return False
    params = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if params is None:
        raise SystemExit(f"{path}: no cell tagged `parameters` to fold papermill's injected values into; "
                         "tag the notebook's parameters cell (View > Cell Toolbar > Tags in Jupyter).")
    source = params.source
    for cell in injected:
        for line in cell.source.splitlines():
            m = re.match(r"^(\w+) = (.*)$", line)
            if not m:
                continue
            name, value = m.groups()
            pattern = re.compile(rf"^{name} = .*?(  # .*)?$", re.M)
            if pattern.search(source):
                source = pattern.sub(lambda mm: f"{name} = {value}{mm.group(1) or ''}", source, count=1)
            else:
                source += f"\n{name} = {value}"
    params.source = source
    nb.cells = [c for c in nb.cells if INJECTED not in c.metadata.get("tags", [])]
    nbformat.write(nb, path)
    return True


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "strip":
        print(__doc__, file=sys.stderr)
        return 2
    for path in argv[1:]:
        if strip_injected(path):
            print(f"{path}: injected-parameters cell folded into the parameters cell")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
