#!/usr/bin/env bash
# Stops the engine started by image/engine-up.sh and removes what dockerd leaves behind:
# its containers' processes and mounts, its iptables chains and rules, docker0 and the bridges
# of its networks, the FORWARD policy and the IPv6 forwarding it changed.
# The images stay in the data root (a later start finds them) unless PURGE=1.
# net.ipv4.ip_forward is restored only when no cluster bridge needs it.
# Tolerates a machine where nothing runs or where an earlier run left things half done.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || idie "the engine needs root"

# Processes whose command line names our engine's exec root or socket: dockerd, its containerd
# and the shims of its containers.
engine_processes() {
  local pid
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [[ $pid == "$$" ]] && continue
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qE -- "$ENGINE_EXEC_ROOT|$ENGINE_SOCKET"; then
      echo "$pid"
    fi
  done
}

# Container processes: children of the shims (not named after the engine themselves).
shim_children() {
  local shim
  for shim in "$@"; do
    if tr '\0' ' ' 2>/dev/null <"/proc/$shim/cmdline" | grep -q containerd-shim; then
      pgrep -P "$shim" 2>/dev/null || true
    fi
  done
}

if local_engine_answers; then
  mapfile -t running < <("$LOCAL_DOCKER_CLI" -H "unix://$ENGINE_SOCKET" ps -q 2>/dev/null)
  if ((${#running[@]})); then
    ilog "killing ${#running[@]} running container(s)"
    "$LOCAL_DOCKER_CLI" -H "unix://$ENGINE_SOCKET" kill "${running[@]}" >/dev/null 2>&1 || true
  fi
fi

if [[ -f $ENGINE_PIDFILE ]]; then
  pid=$(cat "$ENGINE_PIDFILE")
  if [[ -n $pid && -d /proc/$pid ]] && grep -qa "$ENGINE_SOCKET" "/proc/$pid/cmdline" 2>/dev/null; then
    ilog "stopping dockerd $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do [[ -d /proc/$pid ]] || break; sleep 0.5; done
    [[ -d /proc/$pid ]] && kill -KILL "$pid" 2>/dev/null
  fi
fi

mapfile -t leftovers < <(engine_processes)
if ((${#leftovers[@]})); then
  mapfile -t children < <(shim_children "${leftovers[@]}")
  ilog "killing ${#leftovers[@]} leftover engine process(es) and ${#children[@]} container process(es)"
  kill -KILL "${children[@]}" "${leftovers[@]}" 2>/dev/null || true
  sleep 0.5
fi

# Mounts under the data root and the exec root (overlay layers, container netns, shm).
mapfile -t mounts < <(findmnt -rn -o TARGET | grep -E "^($ENGINE_ROOT|$ENGINE_EXEC_ROOT)(/|$)" | sort -r)
for target in "${mounts[@]}"; do
  umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
done

# iptables: rules in the built-in chains that jump to dockerd's chains or name its bridges,
# then dockerd's own chains.
docker_rule='(-j DOCKER|-[io] docker0|-[io] br-[0-9a-f]{12}( |$))'
for table in filter nat; do
  while IFS= read -r rule; do
    read -r -a words <<<"${rule#-A }"
    iptables -t "$table" -D "${words[@]}" 2>/dev/null || true
  done < <(iptables -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ' | grep -E -- "$docker_rule")
  for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
    iptables -t "$table" -F "$chain" 2>/dev/null || true
  done
  for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
    iptables -t "$table" -X "$chain" 2>/dev/null || true
  done
done

# Bridges: docker0 and the br-<network id> of user-defined networks (kind's among them).
for bridge in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
  if [[ $bridge == docker0 || $bridge =~ ^br-[0-9a-f]{12}$ ]]; then
    ip link delete "$bridge" 2>/dev/null || true
  fi
done

# What dockerd changed on the host.
if [[ -f $ENGINE_STATE/host-state ]]; then
  # shellcheck source=/dev/null # written by engine-up.sh at run time: nothing to follow
  source "$ENGINE_STATE/host-state"
  if [[ ${forward_policy:-} == ACCEPT ]]; then iptables -P FORWARD ACCEPT; fi
  if [[ -n ${ipv6_all_forwarding:-} ]]; then sysctl -qw "net.ipv6.conf.all.forwarding=$ipv6_all_forwarding" || true; fi
  if [[ -n ${ipv6_default_forwarding:-} ]]; then sysctl -qw "net.ipv6.conf.default.forwarding=$ipv6_default_forwarding" || true; fi
  if [[ ${ip_forward:-} == 0 ]] && ! ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1; then
    sysctl -qw net.ipv4.ip_forward=0 || true
  fi
  rm -f "$ENGINE_STATE/host-state"
fi

rm -f "$ENGINE_SOCKET" "$ENGINE_PIDFILE"
rm -rf "$ENGINE_EXEC_ROOT"
if [[ ${PURGE:-0} == 1 ]]; then
  ilog "removing the data root $ENGINE_ROOT"
  rm -rf "$ENGINE_ROOT"
fi
ilog "engine stopped and cleaned"
