#!/usr/bin/env bash
# Every test: lint, JS type check and unit tests, Python tests, notebooks, and the real-browser
# tests (JupyterLab in Debian's Chromium). Installs what it needs on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

echo "== ruff"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy  # the types of src/layerscope ([tool.mypy] in pyproject.toml)
echo "== js: format and lint (biome), type check (tsc), unit tests"
(cd js && npm run --silent lint && npm run --silent typecheck && npm test --silent)
echo "== docs: mkdocs build --strict (broken links, missing pages, API names that no longer exist)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict  # not --quiet nor -v: both skip warnings (mkdocs#4126, #3991)
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
