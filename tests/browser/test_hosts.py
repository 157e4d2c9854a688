"""The Explorer beyond JupyterLab: in marimo (``mo.ui.anywidget``) and served as an app by
Voila (``scripts/app.sh``), each started by the test on 127.0.0.1 and driven in Chromium."""

from __future__ import annotations

import json
import textwrap
import urllib.request

from .lab import NOTEBOOKS, lab_script_server, marimo_server, voila_server

ROW = '.layerscope-node[data-id="{}"] .layerscope-name'
SMALL = {"LAYERSCOPE_WEIGHTS": "none", "LAYERSCOPE_IMAGE_SIZE": "96"}

MARIMO_APP = """
import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    import layerscope as ls

    widget = mo.ui.anywidget(ls.Explorer("deeplabv3_mobilenet_v3_large"))
    widget
    return mo, widget


@app.cell
def _(mo, widget):
    mo.md(f"hooked: {sorted(widget.value['hooked_modules'])}")
    return


if __name__ == "__main__":
    app.run()
"""


def test_marimo_click_to_hook_reads_back_in_python(page, tmp_path):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(MARIMO_APP))
    with marimo_server(tmp_path, app, SMALL) as url:
        page.goto(url)
        page.wait_for_selector(ROW.format("backbone.4"), timeout=120_000)
        page.get_by_text("hooked: []").wait_for(timeout=60_000)
        page.click(ROW.format("backbone.4"))
        page.wait_for_selector('[data-layerscope-drawn^="backbone.4|"]', timeout=60_000)
        page.wait_for_selector(".layerscope-plot-channel .main-svg")
        # The second cell re-ran with the widget's new value: Python saw the click.
        page.get_by_text("hooked: ['backbone.4']").wait_for(timeout=60_000)
        page.goto("about:blank")  # leave before the server stops


def test_voila_serves_the_quickstart_as_an_app(page, tmp_path):
    with voila_server(tmp_path, NOTEBOOKS / "quickstart.ipynb", SMALL) as url:
        page.goto(url)
        page.wait_for_selector('[data-layerscope-drawn^="backbone.layer4|"]', timeout=180_000)
        assert page.locator(".jp-InputArea-editor").count() == 0  # no code shown
        page.click(ROW.format("backbone.layer1"))
        page.wait_for_selector('[data-layerscope-drawn^="backbone.layer1|"]', timeout=60_000)
        page.wait_for_selector(".layerscope-plot-histogram .main-svg")
        assert page.locator(".layerscope-tile").count() == 16
        page.goto("about:blank")  # leave before the server stops


def test_the_main_command_starts_jupyterlab_without_the_news_toast(tmp_path):
    with lab_script_server(tmp_path) as url:
        name = "@jupyterlab/apputils-extension:notification"
        with urllib.request.urlopen(f"{url}/lab/api/settings/{name}", timeout=10) as r:
            setting = json.load(r)
    # The environment's overrides become the schema's default (JupyterLab's own is "none": ask),
    # and no user setting of the test's own says otherwise.
    assert setting["schema"]["properties"]["fetchNews"]["default"] == "false"
    assert setting["settings"] == {}
