# shellcheck shell=bash # a library (sourced by up.sh and down.sh): no shebang
# Stops the local cluster and removes what it made; sourced by down.sh, and by up.sh to clear
# what an earlier run left behind (a crash, processes killed when a machine or shell stopped)
# before a fresh start.
# Safe to run when nothing is there.

source "$(dirname "${BASH_SOURCE[0]}")/host.sh"

apiserver_ready() {
  [[ -s "$KUBECONFIG_PATH" && -s "$PKI_DIR/admin.crt" ]] || return 1
  curl -sf --max-time 3 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "$APISERVER_URL/readyz" >/dev/null 2>&1
}

crictl_cmd() {
  "$CRICTL_BIN_DIR/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --image-endpoint "unix://$CONTAINERD_SOCK" \
    --timeout "${CRICTL_TIMEOUT:-20s}" "$@"
}

stop_component() {
  local name=$1 wait_s=${2:-15} pid
  if pid=$(component_pid "$name"); then
    log "stopping $name (pid $pid)"
    stop_pid "$pid" "$wait_s"
  fi
  rm -f "$RUN_DIR/$name.pid"
}

# Deletes every pod through the API while the kubelet still runs, so containers get their TERM
# and the runtime tears their sandboxes down. Controllers are stopped first: nothing recreates them.
delete_pods_through_api() {
  apiserver_ready && component_pid kubelet >/dev/null || return 0
  stop_component kube-controller-manager
  stop_component kube-scheduler
  local n
  n=$(kubectl_admin get pods -A --no-headers 2>/dev/null | wc -l) || n=0
  ((n > 0)) || return 0
  log "deleting $n pods through the API (grace period at most 5 s)"
  kubectl_admin delete pods --all --all-namespaces --grace-period=5 --wait=true --timeout=40s \
    >/dev/null 2>&1 || log "some pods did not go away in time; their containers are killed below"
}

# Stops and removes every pod sandbox through the CRI, so that the CNI plugins release their
# addresses, veths, network namespaces and port-mapping rules. A containerd that is not running
# but left its state is started for this (it finds its sandboxes in its own metadata).
remove_sandboxes() {
  [[ -x "$CRICTL_BIN_DIR/crictl" && -d "$CONTAINERD_ROOT/root" ]] || return 0
  local temp_pid=""
  if ! component_pid containerd >/dev/null; then
    [[ -s "$CONF_DIR/containerd.toml" ]] || return 0
    log "starting containerd briefly to remove the sandboxes an earlier run left"
    mkdir -p "$LOG_DIR"
    setsid "$(component_bin containerd)" --config "$CONF_DIR/containerd.toml" \
      >>"$LOG_DIR/containerd.log" 2>&1 </dev/null 9>&- &
    temp_pid=$!
  fi
  # The CRI plugin answers a little after containerd's own API does.
  local pods="" i
  for ((i = 0; i < 50; i++)); do
    pods=$(CRICTL_TIMEOUT=2s crictl_cmd pods -q 2>/dev/null) && break
    pods=""
    sleep 0.2
  done
  local sandboxes=()
  read -r -d '' -a sandboxes <<<"$pods" || true # the IDs, one a line
  if ((${#sandboxes[@]})); then
    log "stopping and removing ${#sandboxes[@]} pod sandboxes through the CRI"
    crictl_cmd stopp "${sandboxes[@]}" >/dev/null 2>&1 || true
    crictl_cmd rmp -f "${sandboxes[@]}" >/dev/null 2>&1 || true
  fi
  if [[ -n "$temp_pid" ]]; then stop_pid "$temp_pid" 10; fi
}

# KILLs the containers' processes (a PID 1 that ignores TERM would keep running) and the shims,
# which outlive containerd; removes the shims' sockets.
kill_containers_and_shims() {
  local pids p i
  for ((i = 0; i < 5; i++)); do
    pids=$(kubepods_pids)
    [[ -z "$pids" ]] && break
    log "killing $(wc -w <<<"$pids") container processes left in the kubepods cgroups"
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.5
  done
  pids=$(shim_pids)
  if [[ -n "$pids" ]]; then
    log "killing $(wc -w <<<"$pids") containerd shims"
    local id
    for p in $pids; do
      # The shim's socket is /run/containerd/s/sha256(<containerd address>/<namespace>/<id>).
      id=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | sed -n '/^-id$/{n;p;q}')
      kill -KILL "$p" 2>/dev/null || true
      [[ -n "$id" ]] && rm -f "/run/containerd/s/$(printf '%s' "$CONTAINERD_SOCK/k8s.io/$id" | sha256sum | cut -d' ' -f1)"
    done
    sleep 0.5
  fi
}

# Unmounts everything below our folders, deepest first.
unmount_below() {
  local prefix m
  for _ in 1 2 3; do # up to three passes: what one pass left mounted is tried again
    local mounts=()
    for prefix in "$@"; do
      while read -r m; do mounts+=("$m"); done < <(awk -v p="$prefix" \
        '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo | sort -ru)
    done
    ((${#mounts[@]})) || return 0
    for m in "${mounts[@]}"; do
      m=$(printf '%b' "$m") # mountinfo writes a space as \040
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
}

# Network namespaces of the CRI (cni-*) that no process uses any more.
remove_unused_netns() {
  [[ -d /run/netns ]] || return 0
  local used f ino
  used=$(for p in /proc/[0-9]*; do readlink "$p/ns/net" 2>/dev/null; done | sort -u)
  for f in /run/netns/cni-*; do
    [[ -e "$f" ]] || continue
    ino=$(stat -L -c %i "$f" 2>/dev/null) || ino=""
    if [[ -n "$ino" ]] && grep -qxF "net:[$ino]" <<<"$used"; then continue; fi
    log "removing network namespace $f"
    umount "$f" 2>/dev/null || umount -l "$f" 2>/dev/null || true
    rm -f "$f"
  done
}

# Removes the iptables chains whose names start with one of the given prefixes, and every rule
# that jumps to them, in every table, for IPv4 and IPv6.
remove_chains() {
  local cmd table chains rule c
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    for table in filter nat mangle raw; do
      local dump
      dump=$("$cmd-save" -t "$table" 2>/dev/null) || continue
      chains=$(grep -oE "^:($(IFS='|'; echo "$*"))[^ ]*" <<<"$dump" | cut -c2-) || true
      [[ -z "$chains" ]] && continue
      # Rules in other chains that jump to ours.
      while read -r rule; do
        [[ -z "$rule" ]] && continue
        eval "$cmd -w -t $table -D ${rule#-A }" 2>/dev/null || true
      done < <(grep -E "^-A " <<<"$dump" | grep -E -- "-j ($(IFS='|'; echo "$*"))" |
        grep -vE "^-A ($(IFS='|'; echo "$*"))")
      for c in $chains; do "$cmd" -w -t "$table" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$cmd" -w -t "$table" -X "$c" 2>/dev/null || true; done
    done
  done
}

remove_kubepods_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    [[ -d "$d" ]] && log "warning: could not remove cgroup $d (processes still in it?)"
  done
  return 0
}

remove_host_dir_if_ours() {
  local d=$1
  [[ -d "$d" ]] || return 0
  dir_existed "$d" && return 0
  mountpoint -q "$d" && { umount "$d" 2>/dev/null || umount -l "$d" 2>/dev/null || true; }
  find "$d" -depth -type d -empty -delete 2>/dev/null || true
}

teardown_cluster() {
  delete_pods_through_api
  stop_component kubelet 20
  remove_sandboxes
  local name
  for name in coredns kube-proxy containerd kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_component "$name"
  done
  local stray
  for stray in $(stray_pids); do
    log "stopping leftover process $stray ($(readlink "/proc/$stray/exe" 2>/dev/null))"
    stop_pid "$stray" 10
  done
  kill_containers_and_shims

  if [[ -x "$K8S_BIN_DIR/kube-proxy" ]] && iptables-save 2>/dev/null | grep -q '^:KUBE-'; then
    "$K8S_BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  remove_chains KUBE- CNI- PODTRAIL-

  unmount_below "$CLUSTER_DIR" "$CONTAINERD_STATE"
  remove_unused_netns
  remove_kubepods_cgroups
  if ip link show "$BRIDGE_NAME" >/dev/null 2>&1; then
    log "removing bridge $BRIDGE_NAME"
    ip link delete "$BRIDGE_NAME" 2>/dev/null || true
  fi
  # Veths of sandboxes whose namespaces are gone go with them; CNI's cached results are ours.
  rm -f /var/lib/cni/results/"$CNI_NETWORK_NAME"-* 2>/dev/null || true
  if [[ -d /var/log/containers ]]; then
    find /var/log/containers -maxdepth 1 -type l -lname "$CLUSTER_DIR/*" -delete 2>/dev/null || true
  fi

  restore_host_state
  local d
  for d in "${HOST_DIRS[@]}"; do remove_host_dir_if_ours "$d"; done
  rm -rf "$CONTAINERD_STATE"
  rmdir "$(dirname "$CONTAINERD_STATE")" 2>/dev/null || true
  if [[ -d "$CLUSTER_DIR" ]]; then
    find "$CLUSTER_DIR" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || true
  fi
}
