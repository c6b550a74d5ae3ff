#!/usr/bin/env bash
# Set up everything a fresh machine with only Python 3.11 needs: system packages (Chromium for
# the browser test, MathJax served locally), the pinned virtual environment, the Jupyter kernel
# and the verified model files. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
[ -f /usr/share/javascript/mathjax/MathJax.js ] || need_apt+=(libjs-mathjax)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

stamp=$VENV/.requirements.sha256
want=$(sha256sum requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x $VENV/bin/python ] || $PY -m venv $VENV
  $VENV/bin/python -m pip install -q --upgrade pip
  $VENV/bin/python -m pip install -q -r requirements.txt
  $VENV/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  $VENV/bin/python -m pip install -q --no-deps -e .
  $VENV/bin/python -m ipykernel install --sys-prefix --name diaropt --display-name "diaropt (.venv)" >/dev/null
  echo "$want" > "$stamp"
fi

$VENV/bin/python -m diaropt provision
