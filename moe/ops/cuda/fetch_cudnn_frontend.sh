#!/usr/bin/env bash
# Unpacks the C++ headers of cudnn-frontend (NVIDIA's header-only graph API
# for cuDNN) from the pinned PyPI wheel nvidia-cudnn-frontend into a
# project-local, git-ignored prefix that CMake finds
# (SB_CUDNN_FRONTEND_INCLUDE, default third_party/cudnn_frontend/include).
# Only the headers are used: the wheel is Python-version specific, the
# headers are not. Idempotent; checks the wheel's SHA-256.
#   bash moe/ops/cuda/fetch_cudnn_frontend.sh [PREFIX]
set -euo pipefail
VERSION=1.32.0
WHEEL_SHA256=c6006556017a4d1c914c52a556c71b1267f2d6a0500f742e7b4edef539878df0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
prefix=${1:-${SB_CUDNN_FRONTEND_PREFIX:-$root/third_party/cudnn_frontend}}
stamp="$prefix/.nvidia-cudnn-frontend-$VERSION"
if [ -f "$stamp" ] && [ -f "$prefix/include/cudnn_frontend.h" ]; then
  echo "[cudnn-frontend] $VERSION present in $prefix"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "[cudnn-frontend] fetching nvidia-cudnn-frontend==$VERSION from PyPI"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --implementation cp --platform manylinux_2_28_x86_64 "nvidia-cudnn-frontend==$VERSION" -d "$tmp"
wheel=$(ls "$tmp"/*.whl)
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --quiet || {
  echo "[cudnn-frontend] $wheel does not have the pinned SHA-256 $WHEEL_SHA256" >&2
  exit 1
}
rm -rf "$prefix"
mkdir -p "$prefix"
python3 - "$wheel" "$prefix" <<'PY'
import sys, zipfile
wheel, prefix = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("include/"):
            z.extract(name, prefix)
PY
touch "$stamp"
echo "[cudnn-frontend] $VERSION headers in $prefix/include"
