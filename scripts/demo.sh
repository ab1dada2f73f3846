#!/usr/bin/env bash
# Set up the environment (first run only) and run a small SEMA training demo
# end to end on data it makes itself: bash scripts/demo.sh
set -euo pipefail
# shellcheck disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
python tools/demo.py --work-dir "${DEMO_WORK_DIR:-work_dirs/demo}"
