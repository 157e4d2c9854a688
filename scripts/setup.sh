#!/usr/bin/env bash
# Creates .venv and installs LayerScope with everything it needs (torch, the JS bundle).
# Safe to run again: it only does what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The JS bundle is built by the package's build hook (hatch-jupyter-builder runs npm).
if ! .venv/bin/python -c "import layerscope, torchvision, jupyterlab, playwright" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.layerscope-installed ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  touch .venv/.layerscope-installed
fi
# Rebuild the bundle when the front end changed since the last build.
if [ ! -f src/layerscope/static/widget.js ] || [ ! -f src/layerscope/static/plotly-partial.js ] \
   || [ -n "$(find js/src js/package.json js/build.mjs -newer src/layerscope/static/widget.js 2>/dev/null | head -n 1)" ]; then
  (cd js && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build)
fi
# JupyterLab in this environment starts without its "news" toast (a default users may change).
overrides=.venv/share/jupyter/lab/settings/overrides.json
if [ ! -f "$overrides" ]; then
  mkdir -p "$(dirname "$overrides")"
  echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}' > "$overrides"
fi
