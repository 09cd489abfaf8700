#!/usr/bin/env bash
# The main job of the README: installs what is missing, builds, prepares the
# default corpus (the Python 3.11 docs' reStructuredText sources, tokenized
# with an 8192-token SentencePiece model) and trains configs/tiny.textproto
# on the CPU with a live progress line. Extra arguments go to `train`:
#   bash launch/quickstart.sh [--set train.steps=100 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/install_deps.sh
bash launch/build.sh
bash launch/prepare_default_data.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
# A new run directory each time: an existing run is never overwritten (resume
# one with: switchboard train --config configs/tiny.textproto --run_dir DIR --resume).
run_dir=runs/tiny-$(date +%Y%m%d-%H%M%S)
exec ./build/launch/switchboard train --config configs/tiny.textproto --run_dir "$run_dir" "$@"
