#!/usr/bin/env bash
# Set up the environment (first run only) and run the test suite:
#   bash scripts/test.sh [pytest arguments]
set -euo pipefail
# shellcheck disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
python -m pytest tests -q -p no:cacheprovider "$@"
