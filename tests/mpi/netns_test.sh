#!/usr/bin/env bash
# Multi-node for real, on one machine: two "nodes" made of network + UTS
# namespaces joined by a bridge (launch/mpirun_netns.sh), mpirun over TCP
# with expert-parallel groups inside a node (ep 2 = the 2 ranks of a node)
# and data parallelism across the nodes.
#   netns_test.sh SCENARIO SWITCHBOARD
#   train  3 steps end normally and log the same losses as the same layout
#          on one node (shared memory)
#   cut    node 1's link goes down mid-run: the job ends non-zero within
#          60 s, naming the lost ranks (2 and 3 on node 1)
#   kill   node 1's ranks are SIGKILLed: the job ends non-zero within 60 s,
#          naming a lost rank
# Skips (exit 77) where namespaces cannot be made (not root, no
# CAP_NET_ADMIN). Talks only to addresses inside the namespaces it makes and
# always removes them (trap).
set -uo pipefail
scenario=$1
switchboard=$2
here=$(cd "$(dirname "$0")" && pwd)
netns="$here/../../launch/mpirun_netns.sh"
config="$here/../../configs/tiny.textproto"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
limit=60

# Can this machine make the nodes? (root, CAP_NET_ADMIN for namespaces,
# veths and bridges, CAP_SYS_ADMIN for UTS namespaces.)
probe() {
  ip netns add "sbprobe$$" || return 1
  local ok=0
  ip link add "sbpb$$" type bridge && ip link del "sbpb$$" || ok=1
  ip netns exec "sbprobe$$" unshare --uts true || ok=1
  ip netns del "sbprobe$$"
  return $ok
}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v unshare >/dev/null ||
   ! probe 2>/dev/null; then
  echo "SKIP: cannot make network + UTS namespaces and a bridge here (needs root with"
  echo "      CAP_NET_ADMIN and CAP_SYS_ADMIN, iproute2 and util-linux's unshare)"
  exit 77
fi

tag="t$(printf '%05d' $(( $$ % 100000 )))"
tmp=$(mktemp -d /tmp/sb_netns_test.XXXXXX)
job_pid=""
cleanup() {
  bash "$netns" down "$tag" >/dev/null 2>&1  # kills everything started in the nodes
  [ -n "$job_pid" ] && kill -KILL "$job_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL ($scenario): $*"; echo "---- job output ----"; cat "$tmp/out" 2>/dev/null; exit 1; }

for i in $(seq 1 2000); do echo "the router sends token $i to expert $((i % 8)) on rank $((i % 4))."; done >"$tmp/corpus.txt"
train_args=(train --config "$config" --set model.vocab_size=257 --set model.d_model=64
  --set train.micro_batch_size=2 --set train.seq_len=64 --set train.log_every=1
  --set data.train_path="$tmp/corpus.txt" --set data.val_path=
  --set parallel.expert_parallel_size=2 --set parallel.collective_timeout_s=5)

bash "$netns" up "$tag" --nodes 2 --slots 2 >/dev/null || fail "could not make the nodes"

# start_job STEPS: mpirun -np 4 in node 0, in the background.
start_job() {
  started=$(date +%s%N)
  bash "$netns" exec "$tag" -- -np 4 "$switchboard" "${train_args[@]}" --set train.steps="$1" \
    --run_dir "$tmp/run" >"$tmp/out" 2>&1 &
  job_pid=$!
}
wait_job() {
  local deadline=$(( $(date +%s) + $1 ))
  while kill -0 "$job_pid" 2>/dev/null; do
    [ "$(date +%s)" -gt "$deadline" ] && fail "still running after $1 s (hang)"
    sleep 0.2
  done
  wait "$job_pid"
  rc=$?
  local ms=$(( ($(date +%s%N) - started) / 1000000 ))
  elapsed=$(printf "%d.%03d" $((ms / 1000)) $((ms % 1000)))
  echo "job ended with exit code $rc after ${elapsed}s"
}
wait_first_step() {
  local deadline=$(( $(date +%s) + 60 ))
  until grep -q "step " "$tmp/out"; do
    kill -0 "$job_pid" 2>/dev/null || fail "training ended before its first step"
    [ "$(date +%s)" -gt "$deadline" ] && fail "no training step within 60 s"
    sleep 0.2
  done
}
expect_output() { grep -q -- "$1" "$tmp/out" || fail "output lacks '$1'"; }

case "$scenario" in
  train)
    start_job 3
    wait_job 120
    [ "$rc" -eq 0 ] || fail "exit code $rc"
    expect_output "ranks: 4 = 2 data-parallel x 2 expert-parallel"
    # The same layout on one node (shared memory) must log the same losses.
    mpirun -np 4 --mca pml ob1 "$switchboard" "${train_args[@]}" --set train.steps=3 \
      --run_dir "$tmp/local" >"$tmp/local.out" 2>&1 || fail "one-node run failed: $(cat "$tmp/local.out")"
    python3 - "$tmp/run/metrics.jsonl" "$tmp/local/metrics.jsonl" <<'EOF' || fail "losses differ"
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b) == 3, (len(a), len(b))
for x, y in zip(a, b):
    for k in ("loss", "aux_loss", "z_loss", "grad_norm"):
        assert abs(x[k] - y[k]) <= 1e-6 * abs(y[k]), (x["step"], k, x[k], y[k])
print("two nodes over TCP and one node give the same losses:", [round(x["loss"], 6) for x in a])
EOF
    ;;
  cut | kill)
    start_job 1000000
    wait_first_step
    started=$(date +%s%N)
    if [ "$scenario" = cut ]; then
      echo "cutting node 1's link"
      bash "$netns" cut "$tag" 1
    else
      for pid in $(ip netns pids "sb$tag-1"); do
        if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q "^OMPI_COMM_WORLD_RANK="; then
          echo "SIGKILL pid $pid in node 1"
          kill -KILL "$pid"
        fi
      done
    fi
    wait_job "$limit"
    [ "$rc" -ne 0 ] || fail "exit code 0"
    if [ "$scenario" = cut ]; then
      expect_output "lost rank(s), no answer within .*: rank 2 on ${tag}node1, rank 3 on ${tag}node1"
    else
      expect_output "process rank [23] with PID .* on node 10.77.0.2 exited on signal 9"
    fi
    ;;
  *) echo "unknown scenario $scenario"; exit 2 ;;
esac
echo "---- job output ----"; grep -v "^step" "$tmp/out" | tail -n 20
echo "PASS ($scenario): exit code $rc after ${elapsed}s"
