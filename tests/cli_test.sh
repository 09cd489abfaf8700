#!/usr/bin/env bash
# End-to-end checks of the switchboard CLI: the forward command reproduces a
# golden loss, and bad flags, configs and files exit 2 with a message naming
# what is wrong, without writing outputs.
#   cli_test.sh <switchboard binary> <source dir>
set -uo pipefail
bin=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect_fail <exit code> <message substring> <command...>
expect_fail() {
  local code=$1 needle=$2
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$code" ] || ! grep -qF -- "$needle" "$tmp/err"; then
    echo "FAIL: '$*' exited $got (want $code), stderr lacks '$needle':"
    cat "$tmp/err"
    failures=$((failures + 1))
  fi
}

golden=$src/tests/golden/mixtral_top2_dropless
"$bin" forward --config "$golden.textproto" --weights "${golden}_weights.safetensors" \
  --tokens "${golden}_golden.safetensors" --out "$tmp/fw.safetensors" --dtype f64 >/dev/null || {
  echo "FAIL: forward on the mixtral golden"; failures=$((failures + 1)); }
# Compare the written loss with the golden one (safetensors parsed with the stdlib).
python3 - "$tmp/fw.safetensors" "${golden}_golden.safetensors" <<'PY' || failures=$((failures + 1))
import json, struct, sys
def read(path, name):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        begin, end = header[name]["data_offsets"]
        f.seek(8 + n + begin)
        return struct.unpack("<d", f.read(end - begin))[0]
ours, ref = read(sys.argv[1], "loss"), read(sys.argv[2], "loss")
if abs(ours - ref) > 1e-10 * abs(ref):
    sys.exit(f"FAIL: forward loss {ours} vs golden {ref}")
PY

expect_fail 2 "unknown command" "$bin" no-such-command
expect_fail 2 "missing required flag --config" "$bin" train
expect_fail 2 "unknown flag --colour" "$bin" train --config x --colour red
expect_fail 2 "nope.textproto" "$bin" train --config "$tmp/nope.textproto"
expect_fail 2 "moe.top_k" "$bin" train --config "$src/configs/tiny.textproto" --set moe.top_k=9
expect_fail 2 "moe.bogus" "$bin" train --config "$src/configs/tiny.textproto" --set moe.bogus=1
expect_fail 2 "train.steps" "$bin" train --config "$src/configs/tiny.textproto" --set train.steps=abc
printf 'model { d_model: 64 }\nmoe { top_k: 0 }\n' >"$tmp/bad.textproto"
expect_fail 2 "moe.top_k" "$bin" train --config "$tmp/bad.textproto" --run_dir "$tmp/run"
[ -e "$tmp/run" ] && { echo "FAIL: a rejected config created its run dir"; failures=$((failures + 1)); }
expect_fail 2 "data.train_path" "$bin" train --config "$src/configs/tiny.textproto" \
  --set data.train_path="$tmp/missing" --run_dir "$tmp/run2"
expect_fail 2 "no_such_weights" "$bin" forward --config "$golden.textproto" \
  --weights "$tmp/no_such_weights.safetensors" --tokens "${golden}_golden.safetensors" --out "$tmp/o.safetensors"
head -c 100 "${golden}_weights.safetensors" >"$tmp/truncated.safetensors"
expect_fail 2 "truncated.safetensors" "$bin" forward --config "$golden.textproto" \
  --weights "$tmp/truncated.safetensors" --tokens "${golden}_golden.safetensors" --out "$tmp/o.safetensors"
expect_fail 2 "model.layers" "$bin" forward --config "$src/tests/golden/llama_dense_gqa.textproto" \
  --weights "${golden}_weights.safetensors" --tokens "${golden}_golden.safetensors" --out "$tmp/o.safetensors"
[ -e "$tmp/o.safetensors" ] && { echo "FAIL: a failed forward wrote its output"; failures=$((failures + 1)); }

if [ "$failures" -ne 0 ]; then
  echo "$failures CLI checks failed"
  exit 1
fi
echo "all CLI checks passed"
