#!/usr/bin/env bash
# Whole mpirun jobs on one node: `switchboard train` under mpirun, and
# failure handling. Each failure scenario makes one rank fail and checks
# that the job ends NON-ZERO within 60 s with a message naming the failed
# rank; it never hangs.
#   job_test.sh SCENARIO SWITCHBOARD ABORT_PROBE
#   train   np 2, expert_parallel_size 2: trains, rank 0 alone prints and
#           writes the run dir (one metrics.jsonl line per step)
#   nan     a diverging run (lr 1e30): every rank sees the same non-finite
#           loss; the error is printed once and the job exits 1 (no abort)
#   resume  np 4, ep 2: 4 steps in one go == 2 steps, checkpoint, `train
#           --resume`, 2 more (byte-identical checkpoint files); then the
#           same checkpoint resumes on np 2 with ep 1 (resharded experts)
#   reject  np 3 with expert_parallel_size 2: config rejected before any
#           work (exit 2, message printed once); a bad --set likewise
#   preempt np 2, ep 2, checkpoint.every_steps 0: SIGUSR1 to mpirun (which
#           forwards it), then SIGTERM to every rank (as srun and Slurm
#           deliver it): each time every rank finishes its step, one
#           checkpoint is saved, the job exits 3 and `--resume` continues;
#           the final checkpoint equals an uninterrupted run's byte for
#           byte. Then SIGTERM to mpirun (which relays it after
#           odls_base_sigkill_timeout, 1 s): a checkpoint, exit 1
#   check   a failed SB_CHECK on rank 1 (fatal hook -> MPI_Abort)
#   status  a runtime error on rank 1 (Runtime::Abort)
#   slow    rank 1 stays out of a collective past the timeout: the watchdog
#           ends the job and reports that every rank still answers
#   device_error  rank 1's device transport (a stand-in for NCCL's probe)
#           reports an async error: device communicators aborted, rank named
#   device_hang   a device operation never finishes on any rank: the
#           watchdog's probe timeout ends the job
#   kill    SIGKILL of one training rank (mpirun notices the dead child)
#   stop    SIGSTOP of one training rank: alive but silent, like a rank
#           behind a cut link; the watchdog's census names it
#   nccl_kill, nccl_stop  the same on 2 GPUs over NCCL (train.device = CUDA):
#           the stopped rank's peers wait in NCCL kernels, which the
#           watchdog's device probe sees; skipped (77) without 2 GPUs or
#           while the binary does not train on CUDA
# Only processes this script started are signalled, by pid.
set -uo pipefail
scenario=$1
switchboard=$2
probe=$3
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
limit=60

tmp=$(mktemp -d /tmp/sb_job_test.XXXXXX)
job_pid=""
cleanup() {
  if [ -n "$job_pid" ] && kill -0 "$job_pid" 2>/dev/null; then
    for pid in $(ps -o pid= --ppid "$job_pid"); do kill -KILL "$pid" 2>/dev/null; done
    kill -KILL "$job_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL ($scenario): $*"; echo "---- job output ----"; cat "$tmp/out" 2>/dev/null; exit 1; }

# start_job CMD...: runs mpirun in the background, output in $tmp/out.
start_job() {
  started=$(date +%s%N)
  "$@" >"$tmp/out" 2>&1 &
  job_pid=$!
}
# wait_job SECONDS: waits for the job; sets rc and elapsed; fails on timeout.
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
expect_output() { grep -q -- "$1" "$tmp/out" || fail "output lacks '$1'"; }
# wait_step WHAT: waits (60 s at most) for the job's first progress line.
wait_step() {
  local deadline=$(( $(date +%s) + 60 ))
  until grep -q "^step " "$tmp/out"; do
    kill -0 "$job_pid" 2>/dev/null || fail "$1: the job ended before its first step"
    [ "$(date +%s)" -gt "$deadline" ] && fail "$1: no training step within 60 s"
    sleep 0.05
  done
}

# A running training job: NP ranks (default 4), expert-parallel groups of
# 2, extra `train` arguments after NP.
start_training() {
  local np=${1:-4}
  shift || true
  for i in $(seq 1 2000); do echo "the router sends token $i to expert $((i % 8)) on rank $((i % 4))."; done >"$tmp/corpus.txt"
  start_job mpirun -np "$np" "$switchboard" train --config "$(dirname "$0")/../../configs/tiny.textproto" \
    --set model.vocab_size=257 --set model.d_model=64 --set train.micro_batch_size=2 \
    --set train.seq_len=64 --set train.steps=1000000 --set train.log_every=1 \
    --set data.train_path="$tmp/corpus.txt" --set data.val_path= \
    --set parallel.expert_parallel_size=2 --set parallel.collective_timeout_s=4 \
    --run_dir "$tmp/run" "$@"
  local deadline=$(( $(date +%s) + 60 ))
  until grep -q "step " "$tmp/out"; do
    if ! kill -0 "$job_pid" 2>/dev/null; then
      # Over NCCL: no GPUs, or a binary that does not train on CUDA yet.
      if grep -q "no CUDA device visible\|train.device = CUDA\|parallel.backend = NCCL" "$tmp/out"; then
        echo "SKIP ($scenario): $(grep -m1 "switchboard train" "$tmp/out")"
        exit 77
      fi
      fail "training ended before its first step"
    fi
    [ "$(date +%s)" -gt "$deadline" ] && fail "no training step within 60 s"
    sleep 0.2
  done
}
# pid_of_rank R: the pid of world rank R among mpirun's children.
pid_of_rank() {
  for pid in $(ps -o pid= --ppid "$job_pid"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$pid"
      return
    fi
  done
}

case "$scenario" in
  train)
    for i in $(seq 1 500); do echo "token $i goes to expert $((i % 8))."; done >"$tmp/corpus.txt"
    start_job mpirun -np 2 "$switchboard" train --config "$(dirname "$0")/../../configs/tiny.textproto" \
      --set model.vocab_size=257 --set model.d_model=64 --set train.micro_batch_size=2 \
      --set train.seq_len=32 --set train.steps=3 --set train.log_every=1 --set train.eval_batches=3 \
      --set data.train_path="$tmp/corpus.txt" --set data.val_path="$tmp/corpus.txt" \
      --set parallel.expert_parallel_size=2 --run_dir "$tmp/run"
    wait_job "$limit"
    [ "$rc" -eq 0 ] || fail "exit code $rc"
    expect_output "ranks: 2 = 1 data-parallel x 2 expert-parallel (4 experts per rank)"
    [ "$(grep -c '^step ' "$tmp/out")" -eq 3 ] || fail "want 3 step lines (rank 0 only)"
    [ "$(grep -c '^model:' "$tmp/out")" -eq 1 ] || fail "the model line is printed more than once"
    [ "$(wc -l <"$tmp/run/metrics.jsonl")" -eq 3 ] || fail "want 3 lines in metrics.jsonl"
    grep -q '"val_loss"' "$tmp/run/metrics.jsonl" || fail "no val_loss in metrics.jsonl"
    [ -f "$tmp/run/config.textproto" ] || fail "no config.textproto"
    ;;
  nan)
    for i in $(seq 1 500); do echo "token $i goes to expert $((i % 8))."; done >"$tmp/corpus.txt"
    start_job mpirun -np 2 "$switchboard" train --config "$(dirname "$0")/../../configs/tiny.textproto" \
      --set model.vocab_size=257 --set model.d_model=64 --set train.micro_batch_size=2 \
      --set train.seq_len=32 --set train.steps=20 --set optimizer.lr=1e30 \
      --set schedule.warmup_steps=0 --set data.train_path="$tmp/corpus.txt" --set data.val_path= \
      --set parallel.expert_parallel_size=2 --run_dir "$tmp/run"
    wait_job "$limit"
    [ "$rc" -eq 1 ] || fail "exit code $rc, want 1"
    # Each non-finite step is skipped (one line each, rank 0 only), and after
    # checkpoint.max_nonfinite_steps (5) in a row every rank stops together.
    [ "$(grep -c 'update skipped' "$tmp/out")" -eq 5 ] || fail "want 5 skipped-step lines"
    [ "$(grep -c 'stopping at step' "$tmp/out")" -eq 1 ] || fail "want the stop message once"
    grep -q "MPI_ABORT" "$tmp/out" && fail "an error seen by every rank should not abort"
    ;;
  resume)
    for i in $(seq 1 500); do echo "token $i goes to expert $((i % 8))."; done >"$tmp/corpus.txt"
    args=(train --config "$(dirname "$0")/../../configs/tiny.textproto" --set model.vocab_size=257
          --set model.d_model=32 --set model.num_layers=2 --set train.micro_batch_size=2
          --set train.seq_len=32 --set train.steps=4 --set train.log_every=1
          --set data.train_path="$tmp/corpus.txt" --set data.val_path=
          --set checkpoint.every_steps=2 --set checkpoint.keep_last=0)
    start_job mpirun -np 4 "$switchboard" "${args[@]}" --set parallel.expert_parallel_size=2 \
      --run_dir "$tmp/a"
    wait_job "$limit"
    [ "$rc" -eq 0 ] || fail "uninterrupted run: exit code $rc"
    mkdir -p "$tmp/b/checkpoints"
    cp -r "$tmp/a/checkpoints/step_2" "$tmp/b/checkpoints/"
    echo step_2 >"$tmp/b/checkpoints/latest"
    start_job mpirun -np 4 "$switchboard" "${args[@]}" --set parallel.expert_parallel_size=2 \
      --run_dir "$tmp/b" --resume
    wait_job "$limit"
    [ "$rc" -eq 0 ] || fail "resumed run: exit code $rc"
    expect_output "resumed from"
    for f in model-00001-of-00002.safetensors model-00002-of-00002.safetensors \
             optimizer-00001-of-00002.safetensors optimizer-00002-of-00002.safetensors \
             trainer_state.textproto; do
      cmp -s "$tmp/a/checkpoints/step_4/$f" "$tmp/b/checkpoints/step_4/$f" ||
        fail "resumed step_4/$f differs from the uninterrupted run's"
    done
    # Another layout: the ep=2 checkpoint resumes on 2 ranks with ep=1.
    mkdir -p "$tmp/c/checkpoints"
    cp -r "$tmp/a/checkpoints/step_2" "$tmp/c/checkpoints/"
    echo step_2 >"$tmp/c/checkpoints/latest"
    start_job mpirun -np 2 "$switchboard" "${args[@]}" --set parallel.expert_parallel_size=1 \
      --set train.grad_accum_steps=2 --run_dir "$tmp/c" --resume
    wait_job "$limit"
    [ "$rc" -eq 0 ] || fail "resume on np 2, ep 1: exit code $rc"
    [ -f "$tmp/c/checkpoints/step_4/model-00001-of-00001.safetensors" ] ||
      fail "resharded run wrote no step_4 checkpoint"
    # A flipped bit in the experts of EP rank 1 (model-00002): rank 1 names
    # the tensor, rank 0 the checkpoint to go back to; exit 2, no abort.
    cp -r "$tmp/a" "$tmp/d"
    python3 -c "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[-9] ^= 0x40; open(p, 'wb').write(b)" \
      "$tmp/d/checkpoints/step_4/model-00002-of-00002.safetensors"
    start_job mpirun -np 4 "$switchboard" "${args[@]}" --set parallel.expert_parallel_size=2 \
      --set train.steps=6 --run_dir "$tmp/d" --resume
    wait_job "$limit"
    [ "$rc" -eq 2 ] || fail "corrupt checkpoint: exit code $rc, want 2"
    expect_output "\\[rank 1 on .*model-00002-of-00002.safetensors: tensor '.*': checksum mismatch"
    [ "$(grep -c -- 'resume from it with --resume_from step_2' "$tmp/out")" -eq 1 ] ||
      fail "want the fallback checkpoint named once"
    grep -q "MPI_ABORT" "$tmp/out" && fail "a failed resume should not abort"
    ;;
  reject)
    echo "hello" >"$tmp/corpus.txt"
    start_job mpirun -np 3 "$switchboard" train --config "$(dirname "$0")/../../configs/tiny.textproto" \
      --set parallel.expert_parallel_size=2 --set data.train_path="$tmp/corpus.txt" --run_dir "$tmp/run"
    wait_job 30
    [ "$rc" -eq 2 ] || fail "exit code $rc, want 2"
    expect_output "world size 3 is not divisible by parallel.expert_parallel_size = 2"
    [ "$(grep -c 'is not divisible' "$tmp/out")" -eq 1 ] || fail "message printed more than once"
    [ -e "$tmp/run" ] && fail "a run dir was created before the config was validated"
    # A bad --set: every rank fails alike, rank 0 alone says so, once.
    start_job mpirun -np 3 "$switchboard" train --config "$(dirname "$0")/../../configs/tiny.textproto" \
      --set moe.bogus=1 --run_dir "$tmp/run"
    wait_job 30
    [ "$rc" -eq 2 ] || fail "bad --set: exit code $rc, want 2"
    [ "$(grep -c -- '--set moe.bogus=1' "$tmp/out")" -eq 1 ] || fail "--set error printed more than once"
    [ "$(grep -o -- '--set moe.bogus=1' "$tmp/out" | wc -l)" -eq 1 ] || fail "--set prefix repeated"
    ;;
  preempt)
    for i in $(seq 1 500); do echo "token $i goes to expert $((i % 8))."; done >"$tmp/corpus.txt"
    args=(train --config "$(dirname "$0")/../../configs/tiny.textproto" --set model.vocab_size=257
          --set model.d_model=32 --set model.num_layers=2 --set train.micro_batch_size=2
          --set train.seq_len=32 --set train.steps=200 --set data.train_path="$tmp/corpus.txt"
          --set data.val_path= --set checkpoint.every_steps=0 --set parallel.expert_parallel_size=2)
    start_job mpirun -np 2 "$switchboard" "${args[@]}" --set train.log_every=50 --run_dir "$tmp/whole"
    wait_job "$limit"
    [ "$rc" -eq 0 ] || fail "uninterrupted run: exit code $rc"
    # interrupt RUN_DIR WHO SIGNAL WANT_RC EXTRA_ARGS...: starts (or resumes)
    # the run and, after its first progress line, sends SIGNAL to mpirun or
    # to every rank.
    interrupt() {
      local dir=$1 who=$2 sig=$3 want=$4 resume=()
      shift 4
      [ -e "$dir/checkpoints/latest" ] && resume=(--resume)
      start_job mpirun -np 2 "$switchboard" "${args[@]}" "$@" --run_dir "$dir" "${resume[@]}"
      wait_step "$who/$sig"
      if [ "$who" = mpirun ]; then
        kill "-$sig" "$job_pid"
      else
        for r in 0 1; do kill "-$sig" "$(pid_of_rank $r)"; done
      fi
      wait_job "$limit"
      [ "$rc" -eq "$want" ] || fail "$who/$sig: exit code $rc, want $want"
      latest=$(cat "$dir/checkpoints/latest") || fail "$who/$sig: no checkpoint"
      echo "$who/$sig: stopped at $latest"
    }
    interrupt "$tmp/p" mpirun USR1 3 --set train.log_every=1
    [ "$(grep -c '^stopped by SIGUSR1 after step' "$tmp/out")" -eq 1 ] || fail "USR1: want one stop line"
    [ "$(grep -c -- '--resume$' "$tmp/out")" -eq 1 ] || fail "USR1: want the resume command once"
    interrupt "$tmp/p" ranks TERM 3 --set train.log_every=1
    expect_output "stopped by SIGTERM after step"
    [ "$latest" != step_200 ] || fail "the run finished before the signals"
    start_job mpirun -np 2 "$switchboard" "${args[@]}" --run_dir "$tmp/p" --resume
    wait_job "$limit"
    [ "$rc" -eq 0 ] || fail "final resume: exit code $rc"
    for f in model-00001-of-00002.safetensors model-00002-of-00002.safetensors \
             optimizer-00001-of-00002.safetensors optimizer-00002-of-00002.safetensors; do
      cmp -s "$tmp/whole/checkpoints/step_200/$f" "$tmp/p/checkpoints/step_200/$f" ||
        fail "after two preemptions step_200/$f differs from the uninterrupted run's"
    done
    # SIGTERM to mpirun (a run too long to end first): mpirun relays it
    # odls_base_sigkill_timeout s late and SIGKILLs as long after (1 s, the
    # default, is enough for this model's step and save) and stops
    # forwarding output at once: sparse progress lines, so that no rank
    # blocks on a full pipe; the checkpoint is the evidence.
    OMPI_MCA_odls_base_sigkill_timeout=1 interrupt "$tmp/q" mpirun TERM 1 \
      --set train.steps=1000000 --set train.log_every=20
    ;;
  check | status | slow | device_error | device_hang)
    start_job mpirun -np 3 "$probe" "$scenario"
    wait_job "$limit"
    [ "$rc" -ne 0 ] || fail "exit code 0"
    case "$scenario" in
      check) expect_output "FATAL \[rank 1 on .*deliberate failure on rank 1" ;;
      status) expect_output "FATAL \[rank 1 on .*\] deliberate runtime error on rank 1" ;;
      slow) expect_output "collective timeout: MPI_Barrier"
            expect_output "every rank answered" ;;
      device_error)
        expect_output "FATAL \[rank 1 on .*\] device collective failed: ncclRemoteError"
        expect_output "oldest unfinished: ncclAllReduce on group 'world'"
        expect_output "rank 1 aborted its device communicators" ;;
      device_hang)
        expect_output "collective timeout: ncclAllReduce on group 'world' (device work)"
        expect_output "every rank answered"
        expect_output "aborted its device communicators" ;;
    esac
    grep -q "outlived its probe" "$tmp/out" && fail "a rank outlived the watchdog"
    grep -q "should not happen" "$tmp/out" && fail "a rank passed the barrier"
    ;;
  kill | stop | nccl_kill | nccl_stop)
    if [ "${scenario#nccl_}" != "$scenario" ]; then
      # One rank per GPU over NCCL; skipped (77) where that cannot run.
      gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
      [ "${gpus:-0}" -ge 2 ] || { echo "SKIP ($scenario): needs 2 GPUs, found ${gpus:-0}"; exit 77; }
      start_training 2 --set train.device=CUDA --set parallel.backend=NCCL
      victim=1
    else
      start_training
      victim=2
    fi
    pid=$(pid_of_rank $victim)
    [ -n "$pid" ] || fail "no process for rank $victim"
    started=$(date +%s%N)
    if [ "${scenario#nccl_}" = kill ]; then
      echo "SIGKILL rank $victim (pid $pid)"
      kill -KILL "$pid"
    else
      echo "SIGSTOP rank $victim (pid $pid)"
      kill -STOP "$pid"
    fi
    wait_job "$limit"
    [ "$rc" -ne 0 ] || fail "exit code 0"
    if [ "${scenario#nccl_}" = kill ]; then
      expect_output "process rank $victim with PID .* exited on signal 9"
    else
      expect_output "lost rank(s), no answer within .*rank $victim on "
      kill -KILL "$pid" 2>/dev/null  # in case the stopped process outlived the job
    fi
    ;;
  *) echo "unknown scenario $scenario"; exit 2 ;;
esac
echo "---- job output ----"; tail -n 25 "$tmp/out"
echo "PASS ($scenario): exit code $rc after ${elapsed}s"
