#!/usr/bin/env bash
# Install the whole OpenMMLab stack for sema_mm into the current Python
# environment (activate a venv first):
#
#   torch 2.14.1 + torchvision 0.29.1, mmengine 0.10.7, mmcv 2.1.0 with ops,
#   mmdet 3.3.0, mmpretrain 1.2.0, DeepSpeed 0.19.8, and this package with
#   its extras.
#
# Usage:
#   scripts/install_stack.sh [WHEELHOUSE]
#
# WHEELHOUSE (or $SEMA_WHEELHOUSE): a directory of prebuilt wheels, e.g.
# ../shared/wheels. If it holds an mmcv 2.1.0 wheel that fits this Python
# and platform, that wheel is used; otherwise mmcv is built from PyPI's
# sdist (about 11 minutes on 2 cores): no wheel exists for torch 2.14, whose
# headers need C++20 while mmcv 2.1.0's setup.py forces -std=c++17, so the
# script patches that flag before building with MMCV_WITH_OPS=1 and
# --no-build-isolation (setup.py imports torch).
#
# Every pip step runs under a constraints file keeping setuptools>=77,<81
# and torch==2.14.1: mmcv's setup.py and mmengine 0.10.7 import
# pkg_resources, which setuptools 81 removed, torch asks for
# setuptools>=77, and nothing installed later may swap torch.
#
# DeepSpeed is built from its sdist with --no-build-isolation (its setup.py
# imports torch; an isolated build would download another torch) and with
# no ops prebuilt; the one op a CPU run needs (deepspeed_shm_comm, its
# collective communication on the CPU) is JIT-compiled here with ninja/g++
# (22 s on 2 idle cores) into torch's extension cache, so that the
# first training run does not stop to compile it.
#
# Environment: PYTHON (default: python), MMCV_BUILD_DIR (where the sdist is
# unpacked; default: a temporary directory), MMCV_STOP_BEFORE_BUILD=1 (only
# download and patch the sdist, print the build command, and stop).
set -euo pipefail

WHEELHOUSE=${1:-${SEMA_WHEELHOUSE:-}}
PYTHON=${PYTHON:-python}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

CONSTRAINTS=$(mktemp "${TMPDIR:-/tmp}/sema-constraints.XXXXXX")
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'setuptools>=77,<81\ntorch==2.14.1\n' > "$CONSTRAINTS"

pip_install() {
    "$PYTHON" -m pip install -c "$CONSTRAINTS" "$@"
}

FIND_LINKS=()
if [ -n "$WHEELHOUSE" ]; then
    if [ -d "$WHEELHOUSE" ]; then
        WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
        FIND_LINKS=(--find-links "$WHEELHOUSE")
        echo "install_stack: using the wheelhouse $WHEELHOUSE"
    else
        echo "install_stack: no wheelhouse at $WHEELHOUSE; building mmcv from source" >&2
        WHEELHOUSE=""
    fi
fi

echo "install_stack: [1/6] build tools, torch, torchvision"
pip_install "setuptools>=77,<81" wheel ninja psutil
pip_install torch==2.14.1 torchvision==0.29.1

echo "install_stack: [2/6] mmengine"
pip_install mmengine==0.10.7

echo "install_stack: [3/6] mmcv 2.1.0 with ops"
mmcv_wheel_fits() {
    # Does the wheelhouse hold an mmcv 2.1.0 wheel pip would install here?
    [ -n "$WHEELHOUSE" ] || return 1
    "$PYTHON" -m pip download --no-deps --only-binary=:all: --no-index \
        --find-links "$WHEELHOUSE" -d "$(mktemp -d)" mmcv==2.1.0 \
        >/dev/null 2>&1
}
mmcv_with_ops_installed() {
    # Re-running the script must not rebuild mmcv (11 minutes).
    "$PYTHON" -c "import mmcv, sys; from mmcv.ops import nms; \
sys.exit(mmcv.__version__ != '2.1.0')" >/dev/null 2>&1
}
if mmcv_with_ops_installed; then
    echo "install_stack: mmcv 2.1.0 with ops is installed already"
elif mmcv_wheel_fits; then
    pip_install --only-binary=mmcv "${FIND_LINKS[@]}" mmcv==2.1.0
else
    BUILD_DIR=${MMCV_BUILD_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")}
    mkdir -p "$BUILD_DIR"
    "$PYTHON" -m pip download --no-deps --no-binary=:all: -d "$BUILD_DIR" \
        mmcv==2.1.0
    tar -xzf "$BUILD_DIR/mmcv-2.1.0.tar.gz" -C "$BUILD_DIR"
    SRC="$BUILD_DIR/mmcv-2.1.0"
    # torch 2.14's headers: '#error C++20 or later compatible compiler is
    # required to use ATen'. mmcv 2.1.0 forces C++17 for torch > 1.12.1.
    sed -i \
        -e "s/extra_compile_args\['cxx'\] = \['-std=c++17'\]/extra_compile_args['cxx'] = ['-std=c++20']/" \
        -e "s/extra_compile_args\['nvcc'\] += \['-std=c++17'\]/extra_compile_args['nvcc'] += ['-std=c++20']/" \
        "$SRC/setup.py"
    if ! grep -q "extra_compile_args\['cxx'\] = \['-std=c++20'\]" "$SRC/setup.py"; then
        echo "install_stack: could not patch $SRC/setup.py for C++20" >&2
        exit 1
    fi
    echo "install_stack: patched $SRC/setup.py: -std=c++17 -> -std=c++20"
    if [ "${MMCV_STOP_BEFORE_BUILD:-0}" = "1" ]; then
        echo "install_stack: MMCV_STOP_BEFORE_BUILD=1, stopping before:"
        echo "  MMCV_WITH_OPS=1 $PYTHON -m pip install -c $CONSTRAINTS --no-build-isolation $SRC"
        exit 0
    fi
    echo "install_stack: building mmcv with ops (about 11 minutes on 2 cores)"
    MMCV_WITH_OPS=1 pip_install --no-build-isolation "$SRC"
fi

echo "install_stack: [4/6] mmdet, mmpretrain"
pip_install "${FIND_LINKS[@]}" mmdet==3.3.0 mmpretrain==1.2.0

echo "install_stack: [5/6] DeepSpeed 0.19.8 and its CPU communication op"
pip_install --no-build-isolation deepspeed==0.19.8
"$PYTHON" - <<'PY'
from deepspeed.accelerator import get_accelerator
from deepspeed.comm.torch import build_shm_op
if get_accelerator().device_name() == 'cpu':
    assert build_shm_op() is not None, 'deepspeed_shm_comm did not build'
PY

echo "install_stack: [6/6] sema_mm with extras"
pip_install "${FIND_LINKS[@]}" -e "$REPO[all]"

"$PYTHON" - <<'PY'
import deepspeed, mmcv, mmdet, mmengine, mmpretrain, torch, torchvision
from mmcv.ops import nms, RoIAlign  # noqa: F401  (compiled ops)
import sema_mm
print('install_stack: OK', 'torch', torch.__version__, 'torchvision',
      torchvision.__version__, 'mmengine', mmengine.__version__, 'mmcv',
      mmcv.__version__, 'mmdet', mmdet.__version__, 'mmpretrain',
      mmpretrain.__version__, 'deepspeed', deepspeed.__version__, 'sema_mm',
      sema_mm.__version__)
PY
