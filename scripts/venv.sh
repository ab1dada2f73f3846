#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: make (once) and activate the
# virtual environment $SEMA_VENV (default: .venv in the repository) with the
# whole stack, through scripts/install_stack.sh. $SEMA_WHEELHOUSE, if set,
# is passed on (a directory of prebuilt wheels, e.g. ../shared/wheels).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEMA_VENV=${SEMA_VENV:-$REPO/.venv}
if [ ! -x "$SEMA_VENV/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$SEMA_VENV"
fi
# shellcheck disable=SC1091
. "$SEMA_VENV/bin/activate"
STAMP="$SEMA_VENV/.sema_stack_installed"
if [ ! -f "$STAMP" ] || [ "$REPO/scripts/install_stack.sh" -nt "$STAMP" ] \
        || [ "$REPO/setup.py" -nt "$STAMP" ]; then
    bash "$REPO/scripts/install_stack.sh" "${SEMA_WHEELHOUSE:-}"
    touch "$STAMP"
fi
cd "$REPO"
