#!/usr/bin/env bash
# The proof that training learns (docs/training.md): installs espeak-ng if it is missing (Debian; needs root),
# sets up .venv, then trains the tiny preset from scratch and fine-tunes a converted 24 kHz model's decoder on
# synthesised speech and music. About 15 minutes on a 2-core CPU. Results in ${OUT:-out/train-proof}.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng > /dev/null; then
    apt-get update -qq && apt-get install -y -qq espeak-ng > /dev/null
fi
bash scripts/setup.sh
. .venv/bin/activate
python examples/train_proof.py "${OUT:-out/train-proof}" "$@"
