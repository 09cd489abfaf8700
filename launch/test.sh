#!/usr/bin/env bash
# The test command of the README: installs what is missing, builds, and runs
# the whole test suite (ctest). With --sanitize it also builds a CPU-only
# AddressSanitizer + UndefinedBehaviorSanitizer tree (build-asan/) and runs
# the suite there.
#   bash launch/test.sh [--sanitize]
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    *) echo "usage: bash launch/test.sh [--sanitize]" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
bash launch/install_deps.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bash launch/build.sh
ctest --test-dir build --output-on-failure -j 2
echo "[test] main suite passed in $(( $(date +%s) - start ))s"
if [ "$sanitize" = 1 ]; then
  SB_BUILD_DIR=build-asan SB_CUDA=OFF bash launch/build.sh -DSB_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
  # detect_leaks=0: OpenMPI and OpenBLAS keep process-lifetime allocations.
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j 2
  echo "[test] sanitizer suite passed; total $(( $(date +%s) - start ))s"
fi
