"""The committed notebooks as a JupyterLab user opens them: no papermill injected-parameters cell."""
import shutil

import nbformat

from rwku_nb import nbtools
from rwku_nb.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _tags(nb):
    return [t for c in nb.cells for t in c.metadata.get("tags", [])]


def test_committed_notebooks_hold_no_injected_parameters_cell():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert nbtools.INJECTED not in _tags(nb), f"{path.name}: run `make notebooks` (it strips the cell)"
        assert _tags(nb).count("parameters") == 1, path.name


def test_strip_folds_injected_values_into_the_parameters_cell(tmp_path):
    path = tmp_path / "nb.ipynb"
    shutil.copy(NOTEBOOKS[0], path)
    nb = nbformat.read(path, as_version=4)
    i = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "gpu-llama3-8b"\nextra = 3\n')
    injected.metadata["tags"] = [nbtools.INJECTED]
    nb.cells.insert(i + 1, injected)
    nbformat.write(nb, path)
    assert nbtools.strip_injected(path) and not nbtools.strip_injected(path)
    nb = nbformat.read(path, as_version=4)
    assert nbtools.INJECTED not in _tags(nb)
    source = nb.cells[i].source
    # the user's parameters cell now says what the outputs were made with, comments kept
    assert 'profile = "gpu-llama3-8b"  # params/<profile>.yaml' in source and "extra = 3" in source
    assert "overrides = {}" in source


def test_strip_without_a_parameters_cell_says_what_to_tag(tmp_path):
    import nbformat
    import pytest

    from rwku_nb import nbtools

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'cpu'", metadata={"tags": ["injected-parameters"]})]
    path = tmp_path / "no_params.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(SystemExit, match="no cell tagged `parameters`"):
        nbtools.strip_injected(path)
    assert nbformat.read(path, as_version=4).cells[0].source == "profile = 'cpu'"  # nothing half-written
