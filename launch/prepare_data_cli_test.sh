#!/usr/bin/env bash
# End-to-end test of `switchboard prepare-data` on a few python3.11-doc
# sources (no network): exit codes, the dataset layout, --verify, and that a
# failed run leaves nothing at --out. Usage: prepare_data_cli_test.sh SWITCHBOARD_BINARY
set -uo pipefail
SB="${1:?usage: $0 path/to/switchboard}"
DOCS=/usr/share/doc/python3.11/html/_sources/tutorial
T="$(mktemp -d "${TMPDIR:-/tmp}/sb_cli_test.XXXXXX")"
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
check() {  # check NAME EXPECTED_EXIT COMMAND...
  local name="$1" want="$2"; shift 2
  "$@" >"$T/log" 2>&1
  local got=$?
  if [ "$got" -eq "$want" ]; then passed=$((passed + 1)); echo "ok   $name"
  else failed=$((failed + 1)); echo "FAIL $name: exit $got, expected $want"; sed 's/^/     /' "$T/log"; fi
}
expect() {  # expect NAME CONDITION...
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); echo "ok   $name"
  else failed=$((failed + 1)); echo "FAIL $name"; fi
}

mkdir -p "$T/corpus/sub"
cp "$DOCS/appetite.rst.txt" "$DOCS/interpreter.rst.txt" "$T/corpus/"
cp "$DOCS/venv.rst.txt" "$DOCS/whatnow.rst.txt" "$T/corpus/sub/"
printf '%s\n' '{"text": "a json document"}' '{"text": "another one"}' > "$T/corpus/sub/c.jsonl"

check "prepare-data trains a tokenizer and writes shards" 0 \
  "$SB" prepare-data --input "$T/corpus" --out "$T/ds" --vocab_size 500 --val_fraction 0.2 --shard_tokens 3000
expect "progress line on stderr" grep -q "MB/s" "$T/log"
for f in tokenizer.model info.json train/shard_00000.bin train/shard_00001.bin val/shard_00000.bin; do
  expect "writes $f" test -s "$T/ds/$f"
done
expect "no staging directory left" test -z "$(ls -A "$T" | grep '\.tmp-')"
check "--verify accepts it" 0 "$SB" prepare-data --verify "$T/ds" --vocab_size 500
check "--verify checks the vocab size" 2 "$SB" prepare-data --verify "$T/ds" --vocab_size 8192
check "a given tokenizer is used unchanged" 0 \
  "$SB" prepare-data --input "$T/corpus" --out "$T/ds2" --tokenizer "$T/ds/tokenizer.model" --quiet
expect "tokenizer copied byte for byte" cmp -s "$T/ds/tokenizer.model" "$T/ds2/tokenizer.model"

check "existing --out is refused" 2 \
  "$SB" prepare-data --input "$T/corpus" --out "$T/ds" --vocab_size 500
expect "... naming --overwrite" grep -q -- "--overwrite" "$T/log"
: > "$T/empty.txt"
check "empty input fails" 2 "$SB" prepare-data --input "$T/empty.txt" --out "$T/bad" --vocab_size 500
expect "... naming the file" grep -q "empty.txt" "$T/log"
printf 'caf\xe9\n' > "$T/latin1.txt"
check "invalid UTF-8 fails with --invalid_utf8=error" 2 \
  "$SB" prepare-data --input "$T/latin1.txt" --out "$T/bad" --tokenizer "$T/ds/tokenizer.model" \
  --val_fraction 0 --invalid_utf8=error
expect "... naming the file" grep -q "latin1.txt: invalid UTF-8" "$T/log"
check "unwritable --out fails" 2 \
  "$SB" prepare-data --input "$T/corpus" --out "$T/empty.txt/out" --vocab_size 500
check "missing --tokenizer and --vocab_size is a usage error" 2 \
  "$SB" prepare-data --input "$T/corpus" --out "$T/bad"
check "unknown flag is a usage error" 2 "$SB" prepare-data --bogus
expect "failed runs leave nothing at --out" test ! -e "$T/bad"

# A shard from another tokenizer: swap in ds2's shard under ds's tokenizer... of another vocab.
check "another dataset" 0 "$SB" prepare-data --input "$T/corpus" --out "$T/ds3" --vocab_size 400 --quiet
cp "$T/ds3/train/shard_00000.bin" "$T/ds/train/shard_00009.bin"
check "--verify rejects a shard of another tokenizer" 2 "$SB" prepare-data --verify "$T/ds"
expect "... naming the shard" grep -q "shard_00009.bin" "$T/log"
head -c 100 "$T/ds2/train/shard_00000.bin" > "$T/ds2/train/shard_00000.bin.tmp"
mv "$T/ds2/train/shard_00000.bin.tmp" "$T/ds2/train/shard_00000.bin"
check "--verify rejects a truncated shard" 2 "$SB" prepare-data --verify "$T/ds2"
expect "... saying so" grep -q "size mismatch" "$T/log"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
