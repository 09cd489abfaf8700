#!/usr/bin/env bash
# Configures and builds Switchboard into build/ (or $SB_BUILD_DIR).
# CUDA kernels are built when nvcc is found (SB_CUDA), unless SB_CUDA=OFF is
# exported. Extra CMake arguments pass through: launch/build.sh -DSB_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${SB_BUILD_DIR:-build}
cuda_arg=()
[ -n "${SB_CUDA:-}" ] && cuda_arg=(-DSB_CUDA="$SB_CUDA")
cmake -S . -B "$build_dir" -G Ninja "${cuda_arg[@]}" "$@" >/dev/null
echo "[build] compiling in $build_dir (a few minutes on 2 cores the first time)"
ninja -C "$build_dir" --quiet ${SB_BUILD_JOBS:+-j "$SB_BUILD_JOBS"}
echo "[build] $build_dir ready"
