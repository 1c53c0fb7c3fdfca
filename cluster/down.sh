#!/usr/bin/env bash
# Stops the local cluster and leaves the machine as up.sh found it: pods are deleted first (their
# containers get TERM), then the processes up.sh started are stopped by their recorded PIDs, then
# containers and shims that are still there are killed, and mounts, network namespaces, the
# KUBE-*/CNI-* iptables chains, kubepods cgroups, the bridge, containerd's state and the cluster's
# data are removed; sysctls and mount propagation are put back. The component logs stay in
# $CLUSTER_DIR/logs (--purge removes them too). The binary and image caches stay.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/teardown.sh"

[[ $EUID -eq 0 ]] || die "cluster/down.sh must run as root"
purge=0
[[ "${1:-}" == --purge ]] && purge=1

mkdir -p "$(dirname "$LOCK_FILE")"
exec 9>"$LOCK_FILE"
flock -n 9 || { log "another cluster/up.sh or down.sh is running; waiting for it"; flock 9; }

started=$SECONDS
teardown_cluster
if ((purge)); then rm -rf "$CLUSTER_DIR"; fi

# Report anything that is still there.
left=()
[[ -n "$(stray_pids)$(shim_pids)" ]] && left+=("processes: $(stray_pids) $(shim_pids)")
grep -qE " ($CLUSTER_DIR|$CONTAINERD_STATE)[/ ]" /proc/self/mountinfo && left+=("mounts below $CLUSTER_DIR")
ip link show "$BRIDGE_NAME" >/dev/null 2>&1 && left+=("bridge $BRIDGE_NAME")
iptables-save 2>/dev/null | grep -qE '^:(KUBE-|CNI-|PODTRAIL-)' && left+=("iptables chains")
compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null && left+=("kubepods cgroups")
compgen -G '/run/netns/cni-*' >/dev/null && left+=("network namespaces in /run/netns")
if ((${#left[@]})); then
  log "WARNING: left behind: ${left[*]}"
  exit 1
fi
log "cluster down in $((SECONDS - started)) s; nothing left behind"
