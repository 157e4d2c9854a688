#!/usr/bin/env bash
# A notebook as an app, code hidden (Voila): for lectures where students should not see code.
#   bash scripts/app.sh                                   # the quickstart
#   bash scripts/app.sh example_notebooks/deeplabv3_anatomy.ipynb --port 8866
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
notebook="${1:-example_notebooks/quickstart.ipynb}"
shift || true
# LayerScope's template (share/jupyter/voila/templates/layerscope): Voila's lab template without
# stylesheets from a CDN. Two extensions of this environment fail inside Voila's page and are
# left out: plotly's FigureWidget and Notebook 7's (LayerScope needs neither).
export JUPYTER_PATH="$PWD/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
exec .venv/bin/voila "$notebook" --template=layerscope \
  --VoilaConfiguration.extension_denylist=jupyterlab-plotly \
  --VoilaConfiguration.extension_denylist=@jupyter-notebook/lab-extension "$@"
