"""A real JupyterLab for the browser tests and the browser benchmark: started on 127.0.0.1 in a
temporary home, stopped by PID; and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "example_notebooks"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(home: Path, env_extra: dict[str, str], news_off: bool = True) -> dict[str, str]:
    """Jupyter's config, data and runtime folders inside ``home``: nothing of the user's."""
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    if news_off:
        note = json.dumps({"fetchNews": "false"})
        (settings / "notification.jupyterlab-settings").write_text(note)
    env = dict(os.environ)
    env.update({
        "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "MARIMO_SKIP_UPDATE_CHECK": "1",
    })  # fmt: skip
    env.update(env_extra)
    return env


@contextmanager
def serve(cmd: list[str], env: dict[str, str], probe: str, log_path: Path) -> Iterator[None]:
    """Run a server (on 127.0.0.1, by the caller's command) until ``probe`` answers 200;
    stop it by PID afterwards."""
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(probe, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{probe} did not answer within 90 s")
            time.sleep(0.2)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@contextmanager
def jupyter_server(home: Path, env_extra: dict[str, str]) -> Iterator[str]:
    """Start ``jupyter lab`` serving ``home/work``; yield its base URL."""
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    for nb in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(nb, work / nb.name)
    port = free_port()
    cmd = [
        _bin("jupyter"), "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--IdentityProvider.token=",
        "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={work}", "--ServerApp.allow_root=True",
        "--LabApp.expose_app_in_browser=True",
        # The same server also serves Notebook 7 (/notebooks/...); expose its app as well.
        "--JupyterNotebookApp.expose_app_in_browser=True",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with serve(cmd, _isolated_env(home, env_extra), f"{url}/api/status", home / "server.log"):
        yield url


@contextmanager
def quickstart_page(env_extra: dict[str, str]) -> Iterator[Any]:
    """A JupyterLab of its own (in a temporary home) with the quickstart open in headless
    Chromium, its kernel idle; yield the Playwright page. For the benchmarks."""
    import tempfile

    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        jupyter_server(Path(tmp), env_extra) as url,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(f"{url}/lab/tree/quickstart.ipynb")
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            yield page
        finally:
            browser.close()


@contextmanager
def lab_script_server(home: Path) -> Iterator[str]:
    """``scripts/lab.sh``, the README's main command, on 127.0.0.1 with no user settings of
    the test's own; yield its URL."""
    port = free_port()
    cmd = ["bash", str(ROOT / "scripts" / "lab.sh"), "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--IdentityProvider.token=", "--ServerApp.password="]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    env = _isolated_env(home, {}, news_off=False)
    with serve(cmd, env, f"{url}/api/status", home / "lab.log"):
        yield url


@contextmanager
def marimo_server(home: Path, app: Path, env_extra: dict[str, str]) -> Iterator[str]:
    """``marimo run`` on ``app`` (headless, no token, 127.0.0.1); yield its URL."""
    port = free_port()
    cmd = [_bin("marimo"), "run", str(app), "--headless", "--host", "127.0.0.1", "--port",
           str(port), "--no-token"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with serve(cmd, _isolated_env(home, env_extra), f"{url}/health", home / "marimo.log"):
        yield url


@contextmanager
def voila_server(home: Path, notebook: Path, env_extra: dict[str, str]) -> Iterator[str]:
    """``scripts/app.sh`` (Voila) serving ``notebook`` as an app, the README's command; yield
    its URL."""
    port = free_port()
    cmd = ["bash", str(ROOT / "scripts" / "app.sh"), str(notebook), "--no-browser",
           f"--port={port}", "--Voila.ip=127.0.0.1"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    probe = f"{url}/voila/static/voila.js"  # a static file: probing runs no notebook
    with serve(cmd, _isolated_env(home, env_extra), probe, home / "voila.log"):
        yield url


KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && !w.sessionContext.isBusy;
}"""


def run_cell(page, code: str, timeout: float = 120_000) -> str:
    """Append a cell to the open notebook, run it, return its text output."""
    count = page.evaluate(
        """async (code) => {
          const app = window.jupyterapp;
          const nb = app.shell.currentWidget.content;
          nb.activeCellIndex = nb.widgets.length - 1;
          await app.commands.execute('notebook:insert-cell-below');
          nb.activeCell.model.sharedModel.setSource(code);
          await app.commands.execute('notebook:run-cell');
          return nb.widgets.length;
        }""",
        code,
    )
    page.wait_for_function(
        """(n) => {
          const cell = window.jupyterapp.shell.currentWidget.content.widgets[n - 1];
          return cell.model.executionCount !== null && cell.outputArea.model.length > 0;
        }""",
        arg=count,
        timeout=timeout,
    )
    return page.evaluate(
        """(n) => window.jupyterapp.shell.currentWidget.content.widgets[n - 1]
                    .outputArea.node.innerText""",
        count,
    )
