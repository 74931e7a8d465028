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
# audiocraft 1.3.0, the training parts' reference, likewise --no-deps (it pins torch 2.1 and torchaudio); the tests
# load single files of it by path. Its losses import flashy, which imports dora: both --no-deps, then the small
# packages they need. pip's resolver then lists audiocraft's absent requirements: expected, so kept in a log.
pip install -q --no-deps audiocraft==1.3.0 flashy==0.0.2 dora-search==0.1.13 > .venv/reference-install.log 2>&1 || {
    cat .venv/reference-install.log
    exit 1
}
pip install -q treetable==0.2.6 omegaconf==2.4.0 retrying==1.4.2 submitit==1.5.4 colorlog==6.12.0 \
    >> .venv/reference-install.log 2>&1 || {
    cat .venv/reference-install.log
    exit 1
}
# audiocraft and EnCodec 0.1.1 list torchaudio among their requirements; it has no CPU build here and, once
# installed, breaks `import transformers`. Both are installed --no-deps above: check that nothing pulled it in.
if python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torchaudio') is None)"; then
    echo "torchaudio is installed in .venv (a requirement of audiocraft or encodec installed without --no-deps?);" \
        "it breaks 'import transformers': pip uninstall -y torchaudio" >&2
    exit 1
fi
python -c "import flashy" || {
    echo "flashy (audiocraft's balancer needs it) does not import" >&2
    exit 1
}
# Debian programs, installed when missing and this runs as root: chromium, a real browser for the demo's page test
# (tests/test_demo.py drives it with Playwright, which cannot download its own browsers here), and espeak-ng, the
# speech of the training proof (examples/train_proof.py, run end to end by tests/test_trainer.py).
missing=""
command -v chromium > /dev/null || missing="$missing chromium"
command -v espeak-ng > /dev/null || missing="$missing espeak-ng"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } > .venv/apt.log 2>&1 || {
            cat .venv/apt.log
            exit 1
        }
    else
        echo "note: not installed:$missing (apt-get install$missing); the tests that need them will be skipped" >&2
    fi
fi
python -c "import torch, transformers, encodec_hf; print('set up: torch', torch.__version__, '| transformers', transformers.__version__)"
