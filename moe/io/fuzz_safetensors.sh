#!/usr/bin/env bash
# Builds and runs the safetensors header fuzzer (libFuzzer + ASan + UBSan,
# Debian's clang) for SECONDS (default 600), one in-process job. Seeds come from the
# committed fixtures; the corpus grows in build-fuzz/safetensors_corpus/ and
# any crash lands in build-fuzz/ as crash-<sha1> (rerun it by passing that
# file instead of the corpus). Results are recorded in docs/formats.md.
#   bash moe/io/fuzz_safetensors.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-600}
bash launch/fuzz_build.sh safetensors_fuzz
corpus=build-fuzz/safetensors_corpus
mkdir -p "$corpus"
# Mode byte 0x00: the rest is a whole file (see safetensors_fuzz.cc).
for f in tests/testdata/safetensors/*.safetensors tests/testdata/safetensors/sharded/*.safetensors; do
  { printf '\x00'; cat "$f"; } > "$corpus/seed-$(basename "$f")"
done
# Mode byte 0x01 + 2-byte data size: the fuzzer writes the length prefix.
{ printf '\x01\x08\x00'; printf '{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'; printf 'abcdefgh'; } \
  > "$corpus/seed-mode1"
cd build-fuzz
exec ./moe/io/safetensors_fuzz -max_total_time="$seconds" -print_final_stats=1 \
  -use_value_profile=1 -dict=../moe/io/safetensors_fuzz.dict -max_len=8192 \
  safetensors_corpus
