#!/usr/bin/env bash
# Prepares benchmarks/gpu_check.sh for a bare GPU machine, in one command on
# this (CPU) machine: builds the CUDA tree, packs the binaries that the check
# runs with every library they need except glibc and CUDA's own
# (../shared/tools/pack-for-device.sh; CUDA, cuBLAS, cuDNN and NCCL come
# from the GPU machine), strips debug info, checks that the packed binaries
# start here and report "no GPU" cleanly, and compresses the pack to
# PACK_DIR.tar.xz (OpenBLAS alone is 36 MiB unpacked), which must stay under
# the device tool's 64 MiB together with the tracked files.
#   bash benchmarks/pack_gpu_check.sh [PACK_DIR]     (default gpu_pack, git-ignored)
# Then, on the GPU machine, from the repository root (the device tool's
# `run` with carry ["gpu_pack.tar.xz"]):
#   bash benchmarks/gpu_check.sh gpu_pack.tar.xz
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
pack=${1:-gpu_pack}
build=${SB_BUILD_DIR:-build}
tool=${SB_PACK_TOOL:-$root/../shared/tools/pack-for-device.sh}
[ -f "$tool" ] || { echo "pack_gpu_check: $tool not found (set SB_PACK_TOOL)" >&2; exit 2; }

bash launch/build.sh
if ! grep -q '^SB_CUDA:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "pack_gpu_check: $build was configured without CUDA (SB_CUDA=OFF)" >&2
  exit 2
fi
bins=(launch/switchboard benchmarks/gpu_step_bench benchmarks/gpu_expert_gemm_bench
      moe/cuda_ops_test moe/cuda_routing_test moe/attention_reference_test
      optim/optim_cuda_test tests/gpu_training_test)
ninja -C "$build" --quiet $(for b in "${bins[@]}"; do basename "$b"; done)
rm -rf "$pack"
bash "$tool" "$pack" "${bins[@]/#/$build/}" >/dev/null
strip --strip-debug "$pack"/bin/* "$pack"/lib/*
# The packed binaries must start here (no GPU, no driver) and say so.
# shellcheck disable=SC1090
source "$pack/env.sh"
"$pack/bin/switchboard" --help >/dev/null 2>&1
if "$pack/bin/gpu_step_bench" >/tmp/pack_gpu_check.$$ 2>&1; then
  echo "pack_gpu_check: gpu_step_bench ran without a GPU?" >&2; exit 1
fi
grep -q "no CUDA device" /tmp/pack_gpu_check.$$ || { cat /tmp/pack_gpu_check.$$ >&2; exit 1; }
rm -f /tmp/pack_gpu_check.$$
"$pack/bin/cuda_ops_test" --gtest_brief=1 | grep -q "SKIPPED" || { echo "pack_gpu_check: cuda_ops_test did not skip" >&2; exit 1; }
"$pack/bin/attention_reference_test" --gtest_brief=1 >/dev/null
echo "[pack] binaries start and report no GPU here"

tar -C "$(dirname "$pack")" -cf - "$(basename "$pack")" | xz -T2 -6 > "$pack.tar.xz"
bytes=$(stat -c %s "$pack.tar.xz")
tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "[pack] $pack.tar.xz: $((bytes / 1048576)) MiB ($(du -sm "$pack" | cut -f1) MiB unpacked) + $((tree / 1048576)) MiB of tracked files"
if [ $((bytes + tree)) -ge $((60 * 1048576)) ]; then
  echo "pack_gpu_check: pack + tree come near the device tool's 64 MiB" >&2
  exit 1
fi
echo "[pack] on the GPU machine: bash benchmarks/gpu_check.sh $pack.tar.xz"
