#!/usr/bin/env bash
# Deletes the kind cluster $KIND_CLUSTER and everything it left: its node containers and their
# volumes, its network (offline: $KIND_NETWORK; online: kind's network "kind" when nothing else
# uses it) and so the network's bridge and the iptables rules dockerd made for it, the
# kubeconfig, and what the nodes changed on the host (kernel-wide sysctls, IPv6 forwarding,
# /lib/modules created for their bind mount). Ends by checking and exits 1 naming anything
# left. The Docker engine keeps running (image/engine-down.sh stops it); images and caches stay.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$KIND_DIR"
take_lock
select_kind_mode
select_kubeconfig

engine_up=0
if [[ $KIND_MODE == offline ]]; then local_engine_answers && engine_up=1; else "${DOCKER[@]}" version >/dev/null 2>&1 && engine_up=1; fi

network_id=
if ((engine_up)); then
  ensure_kind
  if [[ $KIND_MODE == offline ]]; then
    network_id=$("${DOCKER[@]}" network inspect --format '{{.Id}}' "$KIND_NETWORK" 2>/dev/null || true)
  fi
  if [[ -n $(cluster_containers) ]]; then
    klog "deleting the kind cluster $KIND_CLUSTER"
    "$KIND" delete cluster --name "$KIND_CLUSTER" --kubeconfig "$KIND_KUBECONFIG" >&2 || true
  fi
  mapfile -t leftovers < <(
    cluster_containers
    "${DOCKER[@]}" ps -a --filter "label=io.podtrail.kind.cluster=$KIND_CLUSTER" --format '{{.Names}}'
  )
  if ((${#leftovers[@]})); then
    klog "removing leftover containers of the cluster: ${leftovers[*]}"
    "${DOCKER[@]}" rm -f -v "${leftovers[@]}" >/dev/null 2>&1 || true
  fi
  # Build containers of an interrupted node-image.sh.
  mapfile -t builders < <("${DOCKER[@]}" ps -a --format '{{.Names}}' | grep '^podtrail-kind-build-' || true)
  ((${#builders[@]})) && "${DOCKER[@]}" rm -f -v "${builders[@]}" >/dev/null 2>&1
  if [[ $KIND_MODE == offline ]]; then
    if [[ -n $network_id ]]; then
      klog "removing the network $KIND_NETWORK"
      "${DOCKER[@]}" network rm "$KIND_NETWORK" >/dev/null || klog "could not remove the network $KIND_NETWORK"
    fi
  elif [[ -z $("${DOCKER[@]}" network inspect --format '{{range .Containers}}{{.Name}} {{end}}' kind 2>/dev/null || echo busy) ]]; then
    klog "removing kind's network \"kind\" (no container uses it)"
    network_id=$("${DOCKER[@]}" network inspect --format '{{.Id}}' kind 2>/dev/null || true)
    "${DOCKER[@]}" network rm kind >/dev/null || true
  fi
else
  klog "the Docker engine is not running: no node container can be running"
fi

# What the nodes changed on the host, once no kind node of any cluster is left in the engine.
other_nodes=
if ((engine_up)); then
  other_nodes=$("${DOCKER[@]}" ps -a --filter label=io.x-k8s.kind.cluster --format '{{.Names}}' | paste -sd' ' -)
fi
if [[ -n $other_nodes ]]; then
  klog "other kind nodes remain ($other_nodes): the host settings are put back when they go"
elif [[ -f $KIND_STATE && $(id -u) == 0 ]]; then
  while read -r what key value; do
    case $what in
      sysctl)
        [[ $value == '?' ]] && continue
        current=$(sysctl -n "$key" 2>/dev/null || echo '?')
        if [[ $current != "$value" ]]; then
          klog "restoring $key = $value (was $current)"
          sysctl -qw "$key=$value" || klog "could not restore $key"
        fi
        ;;
      lib_modules)
        # $key is "absent" when the first node's bind mount created it.
        if [[ $key == absent && -d /lib/modules ]] && [[ -z $(ls -A /lib/modules) ]]; then
          rmdir /lib/modules && klog "removed /lib/modules (created for the nodes' bind mount)"
        fi
        ;;
    esac
  done <"$KIND_STATE"
  rm -f "$KIND_STATE"
fi

if [[ $KIND_KUBECONFIG == "$KIND_DIR/kubeconfig" ]]; then rm -f "$KIND_KUBECONFIG"; fi
rm -f "$KIND_DIR/$KIND_CLUSTER.yaml" "$KIND_DIR/$KIND_CLUSTER.yaml.key" "$KIND_DIR/$KIND_CLUSTER.yaml.new"
rm -rf "${KIND_DIR:?}/bin" "${KIND_DIR:?}/images"
rmdir "$KIND_DIR" 2>/dev/null || true

# Check.
left=()
if ((engine_up)); then
  [[ -z $(cluster_containers) ]] || left+=("containers: $(cluster_containers | tr '\n' ' ')")
  if [[ $KIND_MODE == offline ]] && "${DOCKER[@]}" network inspect "$KIND_NETWORK" >/dev/null 2>&1; then
    left+=("network $KIND_NETWORK")
  fi
fi
if [[ -n $network_id ]]; then
  bridge=br-${network_id:0:12}
  ip link show "$bridge" >/dev/null 2>&1 && left+=("bridge $bridge")
  if [[ $(id -u) == 0 ]]; then
    rules=$( (iptables-save 2>/dev/null; ip6tables-save 2>/dev/null) | grep -c -- "$bridge" || true)
    ((rules == 0)) || left+=("$rules iptables rules naming $bridge")
  fi
fi
if ((${#left[@]})); then
  printf '%s [kind] ERROR: left behind: %s\n' "$(date +%H:%M:%S)" "${left[@]}" >&2
  exit 1
fi
klog "kind cluster $KIND_CLUSTER removed; nothing left behind"
