#!/usr/bin/env bash
# Builds and runs the trainer-state fuzzer (libFuzzer + ASan + UBSan,
# Debian's clang) for SECONDS (default 600), one in-process job:
# ParseTrainerState on fuzzed trainer_state.textproto text
# (launch/trainer_state_fuzz.cc). Seeds are trainer states written by a
# short real run; the dictionary is the config fuzzer's plus the
# TrainerState fields. The corpus grows in build-fuzz/trainer_state_corpus/;
# a crash lands in build-fuzz/ as crash-<sha1>. Results are recorded in
# docs/checkpoints.md.
#   bash launch/fuzz_trainer_state.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
bash launch/fuzz_build.sh trainer_state_fuzz
corpus=build-fuzz/trainer_state_corpus
mkdir -p "$corpus"
# Byte 0: bit 0 set = the directory is step_<byte >> 1> (the seeds' step 2 and 4).
for f in launch/testdata/trainer_state_*.textproto; do
  step=$(sed -n 's/^step: //p' "$f")
  { printf "\\x$(printf %02x $((step * 2 + 1)))"; cat "$f"; } > "$corpus/seed-$(basename "$f")"
  { printf '\x00'; cat "$f"; } > "$corpus/seed-nodir-$(basename "$f")"
done
cat configs/config_fuzz.dict launch/trainer_state_fuzz.dict > build-fuzz/trainer_state.dict
cd build-fuzz
exec ./launch/trainer_state_fuzz -max_total_time="$seconds" -print_final_stats=1 \
  -use_value_profile=1 -dict=trainer_state.dict -max_len=8192 trainer_state_corpus
