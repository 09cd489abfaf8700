#!/usr/bin/env bash
# Prepares the default corpus: python3.11-doc's reStructuredText sources
# (497 files, ~11 MB of prose with code) tokenized with an 8192-piece
# SentencePiece BPE model into runs/data/python-docs/{train,val}, the paths
# configs/tiny.textproto reads. Idempotent: exits at once when the dataset is
# there and valid (prepare-data --verify); a broken one is rebuilt. ~20 s.
#
# Usage: bash launch/prepare_default_data.sh [OUT_DIR]
#   SB_BIN: the switchboard binary (default build/launch/switchboard).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

OUT="${1:-runs/data/python-docs}"
VOCAB=8192
SOURCES=/usr/share/doc/python3.11/html/_sources
SB_BIN="${SB_BIN:-build/launch/switchboard}"

if [ ! -x "$SB_BIN" ]; then
  echo "[data] $SB_BIN not found; build it first (cmake -S . -B build -G Ninja && ninja -C build switchboard)" >&2
  exit 1
fi
if [ ! -d "$SOURCES" ]; then
  echo "[data] $SOURCES missing; run bash launch/install_deps.sh (package python3.11-doc)" >&2
  exit 1
fi
if [ -d "$OUT" ] && "$SB_BIN" prepare-data --verify "$OUT" --vocab_size "$VOCAB" >/dev/null 2>&1; then
  echo "[data] $OUT already prepared"
  exit 0
fi
# val: 2% of the documents (~10 files, ~60k tokens) for periodic eval loss.
"$SB_BIN" prepare-data --input "$SOURCES" --out "$OUT" --vocab_size "$VOCAB" \
  --val_fraction 0.02 --seed 0 --overwrite
"$SB_BIN" prepare-data --verify "$OUT" --vocab_size "$VOCAB"
