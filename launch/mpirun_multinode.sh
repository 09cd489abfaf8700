#!/usr/bin/env bash
# Data + expert parallel training on SEVERAL nodes with mpirun over TCP.
#   bash launch/mpirun_multinode.sh HOSTFILE RANKS_PER_NODE TRAIN_ARGS...
#   SB_NET=10.0.0.0/24 bash launch/mpirun_multinode.sh launch/hostfile.example 4 \
#       --config configs/tiny.textproto --set parallel.expert_parallel_size=4
# Starts nodes x RANKS_PER_NODE ranks of build/launch/switchboard (or
# $SB_BIN; same path on every node) with `train TRAIN_ARGS`; ranks fill one
# node before the next, so EP groups of <= RANKS_PER_NODE ranks stay inside
# a node. Environment (docs/parallel.md, "Several nodes"):
#  - SB_NET: the network (CIDR like 10.0.0.0/24, or an interface name like
#    eth0) that OpenMPI's bootstrap (oob) and data (btl tcp) use; set it
#    whenever nodes have several interfaces (docker, virbr, IPoIB...);
#  - threads per rank = cores / RANKS_PER_NODE, ranks bound to their cores;
#  - TCP keepalives so that mpirun notices a lost node in ~25 s;
#  - the variables a rank needs are forwarded with -x.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,5p' "$0" | sed 's/^# //'; exit 2; }
hostfile=$1 per_node=$2; shift 2
[ -f "$hostfile" ] || { echo "no hostfile $hostfile" >&2; exit 2; }
bin=${SB_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/launch/switchboard}
nodes=$(grep -cEv '^\s*(#|$)' "$hostfile")
np=$(( nodes * per_node ))
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
threads=$(( $(nproc) / per_node )); [ "$threads" -ge 1 ] || threads=1
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
net=()
if [ -n "${SB_NET:-}" ]; then
  net=(--mca oob_tcp_if_include "$SB_NET" --mca btl_tcp_if_include "$SB_NET")
fi
echo "[mpirun_multinode] $nodes nodes x $per_node ranks x $threads threads" >&2
exec mpirun -np "$np" --hostfile "$hostfile" --map-by "ppr:$per_node:node:PE=$threads" \
  --bind-to core --mca pml ob1 --mca btl self,vader,tcp "${net[@]}" \
  --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 5 \
  --mca oob_tcp_keepalive_probes 3 \
  -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x PATH -x LD_LIBRARY_PATH \
  "$bin" train "$@"
