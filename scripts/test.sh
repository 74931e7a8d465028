#!/usr/bin/env bash
# Set up (scripts/setup.sh), then lint and run both test tiers: the fast tier (tiny models, about a minute) and the
# slow tier (full-size models against the references, fuzzing at volume, several processes). Extra arguments go
# to both pytest runs, e.g. `bash scripts/test.sh -x`; `TIER=fast` runs only the fast tier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1

ruff check .
ruff format --check .

run_tier() {
  local status=0
  python -m pytest -q -m "$1" "${@:2}" || status=$?
  # pytest exits 5 when it collected no test: that is a broken suite here, not a pass.
  if [ "$status" -eq 5 ]; then echo "pytest collected no tests for -m '$1'" >&2; return 1; fi
  return "$status"
}

run_tier "not slow" "$@"
if [ "${TIER:-all}" != "fast" ]; then
  run_tier "slow" "$@"
fi
