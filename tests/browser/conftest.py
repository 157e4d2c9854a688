from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, jupyter_server

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def pytest_collection_modifyitems(items):
    for item in items:
        if "browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """(base URL, folder it serves) of a JupyterLab for the whole session."""
    home = tmp_path_factory.mktemp("jupyter")
    env = {"LAYERSCOPE_WEIGHTS": "none", "LAYERSCOPE_IMAGE_SIZE": "160"}
    with jupyter_server(home, env) as url:
        yield url, home / "work"


@pytest.fixture(scope="session")
def lab_url(lab_server):
    return lab_server[0]


@pytest.fixture(scope="session")
def notebook_url(tmp_path_factory):
    """A server of its own for Notebook 7: JupyterLab's saved workspace in a shared server makes
    Notebook 7 try to restore JupyterLab-only commands."""
    home = tmp_path_factory.mktemp("notebook7")
    env = {"LAYERSCOPE_WEIGHTS": "none", "LAYERSCOPE_IMAGE_SIZE": "160"}
    with jupyter_server(home, env) as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page that fails the test on any console error or uncaught exception."""
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    problems: list[str] = []

    def loopback_only(route):  # no test may send traffic to any address but loopback
        url = route.request.url
        host = urllib.parse.urlsplit(url).hostname
        if url.startswith(("data:", "blob:", "about:", "file:")) or host in ("127.0.0.1", None):
            route.continue_()
        else:
            problems.append(f"request to a non-loopback address, aborted: {url}")
            route.abort()

    context.route("**/*", loopback_only)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc} | {exc.stack[:300]}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.problems = problems
    page.forgive = []  # (substring, substring) pairs a test may name for another project's bug
    ARTIFACTS.mkdir(exist_ok=True)
    yield page
    # Every widget on the page ends the test without an error shown (a test that provokes one
    # dismisses it).
    shown = page.evaluate(
        """() => [...document.querySelectorAll('.layerscope-error')]
                 .filter((e) => !e.hidden).map((e) => e.innerText)"""
    )
    problems.extend(f"widget error at teardown: {text}" for text in shown)
    context.close()
    left = [p for p in problems if not any(a in p and b in p for a, b in page.forgive)]
    assert not left, "\n".join(left)
