"""Progress bars: widgets in Jupyter, none at all in a notebook executed with TQDM_DISABLE=1 (what
`make notebooks` commits), and no committed notebook stores a widget (it renders as nothing without its
kernel; tests/test_lab.py would count it missing)."""
import json
import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from rwku_nb import colab

WIDGET = "application/vnd.jupyter.widget-view+json"


def _run(env: dict) -> list:
    """The outputs of one cell that draws a 3-step rwku_nb progress bar, in a fresh python3 kernel."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from rwku_nb.progress import tqdm\nfor _ in tqdm(range(3), desc='steps'): pass")])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute(env=env)
    return nb.cells[0].outputs


def _widgets(outputs) -> int:
    return sum(WIDGET in o.get("data", {}) for o in outputs)


def test_bars_are_widgets_in_jupyter_and_absent_with_tqdm_disable():
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    assert _widgets(_run(env)) == 1  # tqdm.auto picked the notebook bar: the check below can fail
    assert _run(dict(env, TQDM_DISABLE="1")) == []


def test_text_bars_honour_tqdm_disable():
    code = "from rwku_nb.progress import tqdm; import sys; print(tqdm(range(3), file=sys.stderr).disable)"
    run = lambda extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env=dict({k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}, **extra)).stdout.strip()
    assert (run({}), run({"TQDM_DISABLE": "1"})) == ("False", "True")


@pytest.mark.parametrize("path", colab.notebooks(), ids=lambda p: p.stem)
def test_committed_notebooks_store_no_widgets(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = [i for i, c in enumerate(nb["cells"]) if _widgets(c.get("outputs", []))]
    assert not found, f"{path.name}: widget outputs in cells {found}; re-execute with `make notebooks`"
    assert "widgets" not in nb["metadata"], f"{path.name}: widget state in its metadata"
