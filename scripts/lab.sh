#!/usr/bin/env bash
# The main job: set up if needed, then open JupyterLab on the quickstart notebook.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=()
if [ "$(id -u)" = 0 ]; then args+=(--ServerApp.allow_root=True); fi
exec .venv/bin/jupyter lab example_notebooks/quickstart.ipynb "${args[@]}" "$@"
