#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything the package, its tests and the demo need.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first and pinned: 2.13.0 is the local CPU wheel; an unpinned torch pulls gigabytes of CUDA packages.
pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
# The reference implementation, for parity tests only: --no-deps, since it requires torchaudio (no CPU build).
pip install -q --no-deps encodec==0.1.1 2>&1 | grep -v "^WARNING: Location" || true
python -c "import torch, transformers, encodec_hf; print('set up: torch', torch.__version__, '| transformers', transformers.__version__)"
