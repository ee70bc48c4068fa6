"""Browser test: each committed notebook opens in JupyterLab with all its stored outputs rendered.

A JupyterLab server (kernels disabled) serves copies of the notebooks; headless Chromium opens each
one, waits until every stored output, figure and table is in the page, saves a screenshot to
build/lab/<stem>.png and checks that nothing is an error or stderr. Needs `make lab-deps`;
RWKU_NB_SKIP_BROWSER=1 skips it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SHOTS = REPO / "build" / "lab"
# Longest wait for a page to show what it should: a bound, not a timing check. A loaded CI machine needed over 90 s
# for the first notebook.
WAIT_S = 300
BAD_MIME = ("application/vnd.jupyter.stderr", "application/vnd.jupyter.error")
SETTINGS = {  # JupyterLab user settings: render every cell, never write, no news or update checks
    "notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "docmanager-extension/plugin": {"autosave": False},
    "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "extensionmanager-extension/plugin": {"enabled": False},
}
# Counts what the page shows. Dismisses dialogs: with no kernel spec offered, Lab asks 'Select Kernel'
# once it has set up the notebook's session; after that dialog the page no longer changes.
PROBE = """
for (const d of document.querySelectorAll('.jp-Dialog')) {
  const no = d.querySelector('.jp-Dialog-button.jp-mod-reject');
  if (no) { (window.dismissed ??= []).push(d.querySelector('.jp-Dialog-header')?.textContent); no.click(); }
}
const nb = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
if (!nb) return null;
const imgs = [...nb.querySelectorAll('.jp-OutputArea-output img')];
return {cells: nb.querySelectorAll('.jp-Cell').length,
        outputs: nb.querySelectorAll('.jp-OutputArea-child').length,
        images: imgs.length, tables: nb.querySelectorAll('.jp-OutputArea-output table').length,
        loaded: imgs.every(i => i.complete && i.naturalWidth > 0),
        settled: (window.dismissed ?? []).includes('Select Kernel') && !document.querySelector('.jp-Dialog'),
        bad: [...nb.querySelectorAll('.jp-OutputArea-output[data-mime-type]')]
               .map(o => o.dataset.mimeType).filter(m => arguments[0].includes(m)).length};
"""


def expected(nb: dict) -> dict:
    """What JupyterLab should render for a notebook's stored outputs (its counts, as PROBE's)."""
    n = {"cells": len(nb["cells"]), "outputs": 0, "images": 0, "tables": 0, "loaded": True,
         "settled": True, "bad": 0}
    for cell in nb["cells"]:
        last = None
        for out in cell.get("outputs", []):
            # Lab merges consecutive stream outputs of the same name into one output area.
            stream = out.get("name") if out["output_type"] == "stream" else None
            new = not (stream and stream == last)
            n["outputs"] += new
            n["bad"] += new and (stream == "stderr" or out["output_type"] == "error")
            last = stream
            data = out.get("data", {})
            n["images"] += any(m.startswith("image/") for m in data)
            n["tables"] += "".join(data.get("text/html", "")).count("<table")
    return n


def _get(url: str, token: str, method: str = "GET"):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A running JupyterLab on a free local port: (base url, token); stopped at the end."""
    if os.environ.get("RWKU_NB_SKIP_BROWSER") == "1":
        pytest.skip("RWKU_NB_SKIP_BROWSER=1")
    missing = [n for n in ("chromium", "chromedriver") if not shutil.which(n)]
    missing += [m for m in ("jupyterlab", "selenium") if importlib.util.find_spec(m) is None]
    if missing:  # CI installs them (`make lab-deps`) and sets RWKU_NB_REQUIRE_BROWSER=1: there it must run
        why = f"browser test needs {', '.join(missing)}: run `make lab-deps`"
        if os.environ.get("RWKU_NB_REQUIRE_BROWSER") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("lab")
    # A throwaway root with copies: whatever Lab writes (checkpoints, metadata) never reaches the repo.
    (tmp / "root" / "notebooks").mkdir(parents=True)
    for nb in NOTEBOOKS:
        shutil.copy(nb, tmp / "root" / "notebooks")
    for name, value in SETTINGS.items():
        path = tmp / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    env = dict(os.environ, **{f"JUPYTER_{k}_DIR": str(tmp / k.lower()) for k in ("CONFIG", "DATA", "RUNTIME")},
               IPYTHONDIR=str(tmp / "ipython"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={tmp / 'root'}", f"--LabApp.user_settings_dir={tmp / 'settings'}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           # No kernel spec is offered, so opening a notebook cannot start a kernel or run anything.
           "--KernelSpecManager.allowed_kernelspecs=['no-kernel']"]
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp / "root", stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get(f"{url}/api/status", token)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not start; log: {tmp / 'server.log'}", pytrace=False)
                time.sleep(0.5)
        yield url, token
    finally:
        try:
            _get(f"{url}/api/shutdown", token, "POST")
            proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    """Headless Chromium (Debian's chromium + chromium-driver: the driver matches the browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--force-device-scale-factor=1", "--hide-scrollbars"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    # Warm up: the first page load builds Lab's bundles into the browser cache and the server's settings; on a
    # slow machine that alone took the first notebook's whole wait (CI: 'settled' False after 90 s).
    url, token = lab
    driver.get(f"{url}/lab?reset&token={token}")
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and not driver.execute_script(
            "return !!document.querySelector('.jp-LabShell') && !document.querySelector('.jp-Spinner');"):
        time.sleep(0.5)
    yield driver
    driver.quit()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_renders_in_lab(lab, browser, path):
    url, token = lab
    nb = json.loads(path.read_text(encoding="utf-8"))
    bad = [(i, o.get("name", "error")) for i, c in enumerate(nb["cells"]) for o in c.get("outputs", [])
           if o["output_type"] == "error" or o.get("name") == "stderr"]
    want = expected(nb)
    browser.set_window_size(1400, 1000)
    # ?reset: start from an empty workspace, so no notebook from an earlier test is reopened.
    browser.get(f"{url}/lab/tree/notebooks/{path.name}?reset&token={token}")
    deadline, got = time.monotonic() + WAIT_S, None
    while time.monotonic() < deadline and got != want:
        time.sleep(0.5)
        got = browser.execute_script(PROBE, BAD_MIME)
    # Fit the window to the notebook's full height (Lab scrolls inside its panel) for one screenshot.
    height = browser.execute_script(
        "const s = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');"
        "return s ? window.outerHeight - s.clientHeight + s.scrollHeight : 0;")
    browser.set_window_size(1400, min(max(height, 1000), 16000))
    time.sleep(0.5)
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / f"{path.stem}.png"))
    assert got == want, f"{path.name}: rendered {got}, stored outputs need {want}"
    assert not bad, f"{path.name}: error/stderr outputs stored in (cell index, kind) {bad}"
    assert _get(f"{url}/api/kernels", token) == [], "a kernel was started"
