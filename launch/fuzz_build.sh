#!/usr/bin/env bash
# Configures build-fuzz/ (clang, -DSB_FUZZ=ON, no CUDA, no tests) and builds
# the libFuzzer targets named, for the fuzz scripts (moe/io/fuzz_safetensors.sh,
# configs/fuzz_config.sh, data/fuzz_shards.sh, launch/fuzz_trainer_state.sh).
# Logs go to build-fuzz/cmake.log and build-fuzz/ninja.log.
#   bash launch/fuzz_build.sh TARGET...
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build-fuzz
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DSB_CUDA=OFF -DSB_FUZZ=ON \
  -DSB_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > build-fuzz/cmake.log
ninja -C build-fuzz -j2 "$@" > build-fuzz/ninja.log
