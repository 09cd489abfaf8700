#!/usr/bin/env bash
# launch/mpirun_gpu.sh without GPUs (SB_DRY_RUN=1 prints the mpirun
# command): one rank per GPU on every node of the hostfile, ranks filling
# a node before the next, cores split between a node's ranks, NCCL_*
# variables forwarded, train.device=CUDA added; a machine without GPUs and
# no --gpus-per-node is refused with a message. Also `bash -n` of the Slurm
# GPU script.   mpirun_gpu_test.sh REPO_ROOT
set -uo pipefail
root=$1
script="$root/launch/mpirun_gpu.sh"
tmp=$(mktemp -d /tmp/sb_mpirun_gpu_test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

printf 'gpu1 slots=4\n# a comment\n\ngpu2 slots=4\n' >"$tmp/hosts"
out=$(SB_DRY_RUN=1 NCCL_IB_HCA=mlx5_0 SB_BIN=/opt/sb/switchboard bash "$script" \
      --hostfile "$tmp/hosts" --gpus-per-node 4 --config c.textproto --set a.b=1 2>"$tmp/err") ||
  fail "dry run exit $?: $(cat "$tmp/err")"
echo "$out"
for want in "mpirun -np 8 " "--hostfile $tmp/hosts" "--map-by ppr:4:node:PE=" "--bind-to core" \
            "-x NCCL_IB_HCA" "-x NCCL_DEBUG" "/opt/sb/switchboard train --config c.textproto --set a.b=1 --set train.device=CUDA"; do
  [[ "$out" == *"$want"* ]] || fail "command lacks '$want'"
done
grep -q "2 node(s) x 4 GPUs = 8 ranks" "$tmp/err" || fail "summary line: $(cat "$tmp/err")"

# One node, GPU count given: no hostfile.
out=$(SB_DRY_RUN=1 bash "$script" --gpus-per-node 2 --config c.textproto 2>/dev/null) || fail "one node"
[[ "$out" == *"mpirun -np 2 --map-by ppr:2:node"* ]] || fail "one node: $out"

# No GPU here and no count: refused.
if ! nvidia-smi -L >/dev/null 2>&1; then
  SB_DRY_RUN=1 bash "$script" --config c.textproto >/dev/null 2>"$tmp/err" && fail "ran without GPUs"
  grep -q "no GPU found here" "$tmp/err" || fail "message: $(cat "$tmp/err")"
fi
SB_DRY_RUN=1 bash "$script" --gpus-per-node x --config c >/dev/null 2>&1 && fail "accepted a bad count"
bash -n "$root/launch/slurm_gpu.sbatch" || fail "slurm_gpu.sbatch does not parse"
echo "PASS"
