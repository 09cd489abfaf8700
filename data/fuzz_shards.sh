#!/usr/bin/env bash
# Builds and runs the token-shard fuzzer (libFuzzer + ASan + UBSan, Debian's
# clang) for SECONDS (default 600), one in-process job: DecodeShardHeader,
# ShardSource::Open and micro-batch reads on fuzzed shard files
# (data/shard_fuzz.cc). Seeds are small valid shards (u16 and u32, with and
# without EOS) written by shard_fuzz_seeds.py; the corpus grows in
# build-fuzz/shard_corpus/ and a crash lands in build-fuzz/ as crash-<sha1>
# (rerun it by passing that file instead of the corpus). Results are
# recorded in docs/checkpoints.md.
#   bash data/fuzz_shards.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
bash launch/fuzz_build.sh shard_fuzz
corpus=build-fuzz/shard_corpus
mkdir -p "$corpus"
python3 data/shard_fuzz_seeds.py "$corpus"
cd build-fuzz
exec ./data/shard_fuzz -max_total_time="$seconds" -print_final_stats=1 -use_value_profile=1 \
  -max_len=4096 shard_corpus
