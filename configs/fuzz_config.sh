#!/usr/bin/env bash
# Builds and runs the config fuzzer (libFuzzer + ASan + UBSan, Debian's
# clang) for SECONDS (default 600), one in-process job: ParseConfigText,
# ApplyOverride and ValidateConfig on fuzzed text (configs/config_fuzz.cc).
# Seeds are the example configs; the corpus grows in build-fuzz/config_corpus/
# and a crash lands in build-fuzz/ as crash-<sha1> (rerun it by passing that
# file instead of the corpus). Results are recorded in docs/checkpoints.md.
#   bash configs/fuzz_config.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
bash launch/fuzz_build.sh config_fuzz
corpus=build-fuzz/config_corpus
mkdir -p "$corpus"
# Byte 0 picks the world size; a NUL ends the config text, NULs separate overrides.
for f in configs/*.textproto tests/golden/*.textproto; do
  { printf '\x03'; cat "$f"; } > "$corpus/seed-$(basename "$f")"
done
{ printf '\x01'; cat configs/tiny.textproto; printf '\0moe.top_k=1\0moe.moe_layers=1,3\0optimizer.name=adafactor'; } \
  > "$corpus/seed-overrides"
cd build-fuzz
exec ./configs/config_fuzz -max_total_time="$seconds" -print_final_stats=1 \
  -use_value_profile=1 -dict=../configs/config_fuzz.dict -max_len=4096 \
  config_corpus
