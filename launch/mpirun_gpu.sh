#!/usr/bin/env bash
# GPU training with mpirun: one rank per GPU, on this node or on several.
#   bash launch/mpirun_gpu.sh [--hostfile FILE] [--gpus-per-node G] TRAIN_ARGS...
#   bash launch/mpirun_gpu.sh --config configs/gpu_1b.textproto          # every GPU here
#   SB_NET=ib0 bash launch/mpirun_gpu.sh --hostfile hosts --gpus-per-node 8 \
#       --config configs/gpu_1b.textproto --set parallel.expert_parallel_size=8
# Runs build/launch/switchboard (or $SB_BIN; same path on every node)
# `train TRAIN_ARGS --set train.device=CUDA` (parallel.backend AUTO then
# picks NCCL) on nodes x G ranks (docs/parallel.md, "GPUs"):
#  - G = GPUs per node (nvidia-smi -L here, unless --gpus-per-node);
#  - ranks fill one node before the next (--map-by ppr:G:node), so rank r
#    has local rank r % G and binds GPU r % G (OMPI_COMM_WORLD_LOCAL_RANK);
#    expert-parallel groups of <= G ranks stay on one node's NVLink;
#  - each rank is bound to cores/G consecutive cores (PE); on the usual
#    two-socket GPU servers GPUs 0..G/2-1 hang off socket 0, so consecutive
#    core blocks land next to their GPU (check `nvidia-smi topo -m`);
#  - NCCL_* variables set here are forwarded to every rank (NCCL_DEBUG=WARN
#    unless set); SB_NET (CIDR or interface) picks OpenMPI's network;
#  - SB_DRY_RUN=1 prints the mpirun command instead of running it.
set -euo pipefail
usage() { sed -n '2,6p' "$0" | sed 's/^# //'; exit 2; }
hostfile="" per_node=""
while [ $# -gt 0 ]; do
  case "$1" in
    --hostfile) hostfile=$2; shift 2 ;;
    --gpus-per-node) per_node=$2; shift 2 ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
if [ -z "$per_node" ]; then
  per_node=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  if [ "${per_node:-0}" -lt 1 ]; then
    echo "[mpirun_gpu] no GPU found here (nvidia-smi -L); pass --gpus-per-node G" >&2
    exit 2
  fi
fi
[[ "$per_node" =~ ^[1-9][0-9]*$ ]] || { echo "[mpirun_gpu] bad --gpus-per-node '$per_node'" >&2; exit 2; }
nodes=1
hosts=()
if [ -n "$hostfile" ]; then
  [ -f "$hostfile" ] || { echo "[mpirun_gpu] no hostfile $hostfile" >&2; exit 2; }
  nodes=$(grep -cEv '^\s*(#|$)' "$hostfile")
  hosts=(--hostfile "$hostfile")
fi
np=$(( nodes * per_node ))
bin=${SB_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/launch/switchboard}
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
cores=$(nproc)
threads=$(( cores / per_node )); [ "$threads" -ge 1 ] || threads=1
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
forward=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x PATH -x LD_LIBRARY_PATH)
for var in $(compgen -e | grep -E '^(NCCL_|CUDA_VISIBLE_DEVICES$|CUDA_DEVICE_ORDER$)' || true); do
  forward+=(-x "$var")
done
net=()
if [ -n "${SB_NET:-}" ]; then
  net=(--mca oob_tcp_if_include "$SB_NET" --mca btl_tcp_if_include "$SB_NET")
fi
cmd=(mpirun -np "$np" "${hosts[@]}" --map-by "ppr:$per_node:node:PE=$threads" --bind-to core
     "${net[@]}" "${forward[@]}" "$bin" train "$@" --set train.device=CUDA)
echo "[mpirun_gpu] $nodes node(s) x $per_node GPUs = $np ranks, $threads cores each" >&2
if [ -n "${SB_DRY_RUN:-}" ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
[ -x "$bin" ] || { echo "no $bin: build first (bash launch/build.sh)" >&2; exit 2; }
exec "${cmd[@]}"
