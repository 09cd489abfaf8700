#!/usr/bin/env bash
# Data + expert parallel training on ONE node with mpirun.
#   bash launch/mpirun_local.sh NP TRAIN_ARGS...
#   bash launch/mpirun_local.sh 2 --config configs/tiny.textproto --set parallel.expert_parallel_size=2
# Runs build/launch/switchboard (or $SB_BIN) `train TRAIN_ARGS` on NP ranks
# with the environment that matters (docs/parallel.md, "Environment"):
#  - as root, OpenMPI needs OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM);
#  - the ob1 PML over shared memory (vader) starts faster than UCX;
#  - each rank gets cores / NP OpenMP + OpenBLAS threads (at least 1) and,
#    when NP <= cores, is bound to that many cores (--map-by slot:PE=n);
#  - more ranks than cores oversubscribe (slow, but fine for tests) and
#    leave processes unbound.
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,4p' "$0" | sed 's/^# //'; exit 2; }
np=$1; shift
bin=${SB_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/launch/switchboard}
[ -x "$bin" ] || { echo "no $bin: build first (bash launch/build.sh)" >&2; exit 2; }
if [ "$(id -u)" = 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
cores=$(nproc)
threads=$(( cores / np )); [ "$threads" -ge 1 ] || threads=1
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
if [ "$np" -le "$cores" ]; then
  placement=(--map-by "slot:PE=$threads" --bind-to core)
else
  placement=(--oversubscribe --bind-to none)
fi
echo "[mpirun_local] $np ranks x $threads threads on $cores cores" >&2
exec mpirun -np "$np" --mca pml ob1 "${placement[@]}" \
  -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS "$bin" train "$@"
