#!/usr/bin/env bash
# Several "nodes" on ONE machine, for trying and testing multi-node jobs:
# each node is a network namespace (its own TCP/IP stack and address) and a
# UTS namespace (its own host name), joined by a Linux bridge. mpirun runs
# inside node 0 with a hostfile naming the nodes' addresses and an rsh
# agent that starts OpenMPI's daemon of each node inside that node's
# namespaces, so ranks on different nodes talk over TCP exactly as on a real
# cluster (and can be cut off from each other). Needs root (CAP_NET_ADMIN)
# and iproute2. Only the addresses inside the namespaces it makes are used;
# the bridge has no address in the host's namespace.
#
#   bash launch/mpirun_netns.sh run [--nodes N] [--slots S] -- PROGRAM ARGS...
#       up, then mpirun -np N*S PROGRAM ARGS... in node 0, then down
#   bash launch/mpirun_netns.sh up TAG [--nodes N] [--slots S]   make the nodes; prints their state dir
#   bash launch/mpirun_netns.sh exec TAG -- MPIRUN_ARGS...       mpirun MPIRUN_ARGS in node 0
#   bash launch/mpirun_netns.sh cut TAG NODE                     take NODE's link down
#   bash launch/mpirun_netns.sh down TAG                         kill what runs in the nodes, remove them
#
# TAG (<= 6 letters/digits) names everything: namespaces sbTAG-0.., bridge
# sbbrTAG, host names TAGnode0..; state (hostfile, agent) in /tmp/sb_netns_TAG.
# Node i has address 10.77.0.(i+1)/24 on its eth0.
#
# OpenMPI 4.1 settings that this needs (docs/parallel.md, "Several nodes"):
#   --mca routed direct                 daemons connect straight to mpirun (the
#                                       default tree routing relays through
#                                       daemons the agent cannot reach)
#   --mca oob_tcp_if_include CIDR       bootstrap and data over the bridge's
#   --mca btl_tcp_if_include CIDR       subnet only
#   --mca oob_tcp_keepalive_*           notice a lost daemon in ~25 s instead
#                                       of the default 8 min
# and net.ipv4.tcp_retries2 = 5 inside each node (see cmd_up).
set -euo pipefail

subnet_prefix=10.77.0
cidr=$subnet_prefix.0/24

usage() { sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; $d'; exit 2; }
need_root() {
  if ! ip netns add "sbprobe$$" 2>/dev/null; then
    echo "mpirun_netns: cannot create network namespaces (needs root / CAP_NET_ADMIN and iproute2)" >&2
    return 1
  fi
  ip netns del "sbprobe$$"
}
state_dir() { echo "/tmp/sb_netns_$1"; }
ns_name() { echo "sb$1-$2"; }

cmd_up() {
  local tag=$1; shift
  local nodes=2 slots=2
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes=$2; shift 2 ;;
      --slots) slots=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [[ "$tag" =~ ^[a-zA-Z0-9]{1,6}$ ]] || { echo "TAG must be 1-6 letters or digits" >&2; exit 2; }
  need_root
  local dir; dir=$(state_dir "$tag")
  mkdir -p "$dir"
  echo "$nodes" >"$dir/nodes"
  ip link add "sbbr$tag" type bridge
  ip link set "sbbr$tag" up
  : >"$dir/hostfile"
  {
    echo '#!/bin/sh'
    echo '# plm_rsh_agent: "agent HOST COMMAND..." runs COMMAND inside HOST'"'"'s namespaces.'
    echo 'host=$1; shift'
    echo 'case "$host" in'
  } >"$dir/agent.sh"
  for ((i = 0; i < nodes; i++)); do
    local ns addr
    ns=$(ns_name "$tag" "$i")
    addr=$subnet_prefix.$((i + 1))
    ip netns add "$ns"
    ip link add "sbv$tag$i" type veth peer name eth0 netns "$ns"
    ip link set "sbv$tag$i" master "sbbr$tag" up
    ip netns exec "$ns" ip addr add "$addr/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    ip netns exec "$ns" ip link set lo up
    # Give up on an unacknowledged TCP send after ~13 s instead of ~15 min
    # (per namespace): otherwise mpirun, aborting a job, waits that long for
    # a daemon behind a cut link.
    ip netns exec "$ns" sh -c 'echo 5 > /proc/sys/net/ipv4/tcp_retries2; echo 2 > /proc/sys/net/ipv4/tcp_orphan_retries'
    echo "$addr slots=$slots" >>"$dir/hostfile"
    echo "  $addr) ns=$ns; name=${tag}node$i ;;" >>"$dir/agent.sh"
  done
  {
    echo '  *) echo "agent: unknown host $host" >&2; exit 1 ;;'
    echo 'esac'
    echo 'exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $name; $*"'
  } >>"$dir/agent.sh"
  chmod +x "$dir/agent.sh"
  echo "$dir"
}

cmd_exec() {
  local tag=$1; shift
  [ "${1:-}" = "--" ] && shift
  local dir; dir=$(state_dir "$tag")
  [ -f "$dir/hostfile" ] || { echo "no nodes '$tag' (run: $0 up $tag)" >&2; exit 2; }
  export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
  export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
  exec ip netns exec "$(ns_name "$tag" 0)" unshare --uts -- \
    bash -c 'hostname "$0"; exec "$@"' "${tag}node0" \
    mpirun --hostfile "$dir/hostfile" \
    --mca plm_rsh_agent "$dir/agent.sh" --mca routed direct \
    --mca oob_tcp_if_include "$cidr" --mca btl_tcp_if_include "$cidr" \
    --mca btl self,vader,tcp --mca pml ob1 \
    --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 5 \
    --mca oob_tcp_keepalive_probes 3 \
    "$@"
}

cmd_cut() {
  ip link set "sbv$1$2" down
}

cmd_down() {
  local tag=$1 dir nodes
  dir=$(state_dir "$tag")
  nodes=$(cat "$dir/nodes" 2>/dev/null || echo 8)
  local live=()
  for ((i = 0; i < nodes; i++)); do
    local ns; ns=$(ns_name "$tag" "$i")
    ip netns list | grep -qw "^$ns" || continue
    live+=("$ns")
    # Processes started in the node: daemons and ranks, by pid.
    for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
    ip link set "sbv$tag$i" up 2>/dev/null || true  # a cut link, so that peers can reset
  done
  # TCP sockets left by killed processes keep a namespace (and its veth)
  # alive until they time out: close them first.
  for ns in "${live[@]}"; do ip netns exec "$ns" ss -K state all >/dev/null 2>&1 || true; done
  for ns in "${live[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del "sbbr$tag" 2>/dev/null || true
  rm -rf "$dir"
}

cmd_run() {
  local nodes=2 slots=2
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
      --nodes) nodes=$2; shift 2 ;;
      --slots) slots=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || usage
  run_tag="r$$"
  run_tag=${run_tag:0:6}
  trap 'cmd_down "$run_tag"' EXIT
  local tag=$run_tag
  cmd_up "$tag" --nodes "$nodes" --slots "$slots" >/dev/null
  echo "[netns] $nodes nodes x $slots ranks: $(tr '\n' ' ' <"$(state_dir "$tag")/hostfile")" >&2
  # Not exec: the trap must remove the nodes afterwards.
  (cmd_exec "$tag" -- -np $((nodes * slots)) "$@")
}

case "${1:-}" in
  up | exec | cut | down) sub=$1; shift; "cmd_$sub" "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) usage ;;
esac
