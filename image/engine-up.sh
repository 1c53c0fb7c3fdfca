#!/usr/bin/env bash
# Starts a Docker engine of its own (Debian's docker.io) for machines without one:
#   data root   $ENGINE_ROOT (/var/lib/podtrail/docker)
#   socket      unix://$ENGINE_SOCKET (unix:///run/podtrail-docker.sock)
#   runtime     image/runc-wrapper as the default runtime (drops the capabilities this host's
#               bounding set lacks, so privileged containers such as kind nodes start)
#   egress      DOCKER-USER rejects whatever would leave through the machine's uplink
#   cluster     DOCKER-USER accepts the host-process cluster's bridge, which dockerd's
#               FORWARD policy DROP would otherwise cut off
# Idempotent: an engine that already answers only gets its rules checked.
# Use it with: docker -H unix:///run/podtrail-docker.sock ...   Stop it: image/engine-down.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || idie "the engine needs root"

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 && [[ -x $LOCAL_DOCKER_CLI ]] || missing+=(docker.io)
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  [[ -x /usr/bin/python3 ]] || missing+=(python3-minimal)
  ((${#missing[@]})) || return 0
  ilog "installing ${missing[*]} from Debian's packages"
  # The package would start the system-wide daemon; only ours may run.
  local made_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
    rc=$?
  [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || idie "could not install ${missing[*]}"
}

# Remembers what dockerd changes, once per engine lifetime, so engine-down.sh can restore it.
save_host_state() {
  [[ -f $ENGINE_STATE/host-state ]] && return 0
  {
    printf 'forward_policy=%s\n' "$(iptables -S FORWARD 2>/dev/null | awk '$1 == "-P" {print $3}')"
    printf 'ip_forward=%s\n' "$(cat /proc/sys/net/ipv4/ip_forward)"
    printf 'ipv6_all_forwarding=%s\n' "$(cat /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null || echo '')"
    printf 'ipv6_default_forwarding=%s\n' "$(cat /proc/sys/net/ipv6/conf/default/forwarding 2>/dev/null || echo '')"
  } >"$ENGINE_STATE/host-state"
}

ensure_rule() {  # chain, rule...
  local chain=$1
  shift
  iptables -C "$chain" "$@" 2>/dev/null || iptables -I "$chain" "$@"
}

ensure_guard() {
  local uplink
  uplink=$(uplink_interface)
  iptables -N DOCKER-USER 2>/dev/null || true
  # Inserted at the top in reverse order: bridge accepts, then the uplink reject above them.
  ensure_rule DOCKER-USER -o "$CLUSTER_BRIDGE" -j ACCEPT
  ensure_rule DOCKER-USER -i "$CLUSTER_BRIDGE" -j ACCEPT
  if [[ -n $uplink ]]; then
    ensure_rule DOCKER-USER -o "$uplink" -j REJECT
  else
    ilog "no default route: no uplink to guard"
  fi
  # dockerd adds the FORWARD jump itself; add it before dockerd runs too, so the guard holds
  # from the first packet.
  iptables -C FORWARD -j DOCKER-USER 2>/dev/null || iptables -I FORWARD -j DOCKER-USER
}

engine_pid() {
  [[ -f $ENGINE_PIDFILE ]] || return 1
  local pid
  pid=$(cat "$ENGINE_PIDFILE")
  [[ -n $pid && -d /proc/$pid ]] && grep -qa "$ENGINE_SOCKET" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

install_packages
mkdir -p "$ENGINE_ROOT" "$ENGINE_STATE" "$ENGINE_EXEC_ROOT"

if local_engine_answers; then
  ensure_guard
  ilog "engine already answers at unix://$ENGINE_SOCKET"
  exit 0
fi

if pid=$(engine_pid); then
  ilog "dockerd $pid runs but does not answer yet; waiting"
else
  rm -f "$ENGINE_PIDFILE" "$ENGINE_SOCKET"
  save_host_state
  install -m 0755 "$IMAGE_TOOLING_DIR/runc-wrapper" "$ENGINE_STATE/runc-wrapper"
  [[ -f $ENGINE_STATE/daemon.json ]] || printf '{}\n' >"$ENGINE_STATE/daemon.json"
  ensure_guard
  ilog "starting dockerd (data root $ENGINE_ROOT, socket unix://$ENGINE_SOCKET)"
  setsid dockerd \
    --host "unix://$ENGINE_SOCKET" \
    --data-root "$ENGINE_ROOT" \
    --exec-root "$ENGINE_EXEC_ROOT" \
    --pidfile "$ENGINE_PIDFILE" \
    --config-file "$ENGINE_STATE/daemon.json" \
    --add-runtime "$ENGINE_RUNTIME_NAME=$ENGINE_STATE/runc-wrapper" \
    --default-runtime "$ENGINE_RUNTIME_NAME" \
    --storage-driver overlay2 \
    --log-level warn \
    </dev/null >>"$ENGINE_LOG" 2>&1 &
  disown
fi

for _ in $(seq 1 120); do
  if local_engine_answers; then
    ensure_guard
    ilog "engine ready at unix://$ENGINE_SOCKET"
    exit 0
  fi
  sleep 0.5
done
tail -n 30 "$ENGINE_LOG" >&2 || true
idie "dockerd did not answer within 60 s (log: $ENGINE_LOG)"
