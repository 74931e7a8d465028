#!/usr/bin/env bash
# Set up, then run the main job: encode and decode an audio file with the 48 kHz model.
#   MODEL=DIR_OR_HUB_ID INPUT=file.wav bash scripts/demo.sh
# Without MODEL it converts a 48 kHz checkpoint of EnCodec 0.1.1 with random weights (no network needed), so
# the output is noise-like: pass MODEL=facebook/encodec_48khz (Hub access) or a converted folder for real audio.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p out
if [ -z "${MODEL:-}" ]; then
  python scripts/make_demo_assets.py out
  encodec-hf convert out/encodec_48khz-random.th --model encodec_48khz --output out/encodec_48khz-random
  MODEL=out/encodec_48khz-random
fi
INPUT=${INPUT:-out/demo-44k1.wav}
[ -f "$INPUT" ] || python scripts/make_demo_assets.py out
encodec-hf roundtrip "$INPUT" out/roundtrip.wav --model "$MODEL" --bandwidth "${BANDWIDTH:-6}" -f
