# shellcheck shell=bash # a library (sourced by teardown.sh): no shebang
# What the cluster changes on the host outside its own folders, recorded before the first
# change and put back by down.sh; sourced.

HOST_STATE="$RUN_DIR/host-state"
# Sysctls set by up.sh or by the kubelet (its kernel defaults) or kube-proxy.
HOST_SYSCTLS=(
  net.ipv4.ip_forward
  net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables
  net.ipv4.conf.all.route_localnet
  vm.overcommit_memory
  vm.panic_on_oom
  kernel.panic
  kernel.panic_on_oops
  kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes
)
# Folders that the runtime creates outside the cluster's own: removed again when they did not
# exist before (and are empty once our files are gone).
HOST_DIRS=(/run/netns /var/lib/cni /run/containerd /var/log/containers /var/log/pods)

record_host_state() {
  [[ -s "$HOST_STATE" ]] && return 0
  mkdir -p "$RUN_DIR"
  local tmp="$HOST_STATE.tmp" s v d
  : >"$tmp"
  for s in "${HOST_SYSCTLS[@]}"; do
    v=$(sysctl -n "$s" 2>/dev/null) || continue
    printf 'sysctl %s %s\n' "$s" "$v" >>"$tmp"
  done
  for d in "${HOST_DIRS[@]}"; do
    [[ -e "$d" ]] && printf 'existed %s\n' "$d" >>"$tmp"
  done
  # Mount propagation of every mount point (up.sh makes / recursively shared).
  findmnt -rn -o TARGET,PROPAGATION | while read -r target prop; do
    printf 'propagation %s %s\n' "$prop" "$target"
  done >>"$tmp"
  mv "$tmp" "$HOST_STATE"
}

dir_existed() { [[ -s "$HOST_STATE" ]] && grep -qxF "existed $1" "$HOST_STATE"; }

restore_host_state() {
  [[ -s "$HOST_STATE" ]] || return 0
  local kind a b
  while read -r kind a b; do
    case "$kind" in
      sysctl)
        if [[ "$a" == net.ipv4.ip_forward && "$b" == 0 ]] && ip link show docker0 >/dev/null 2>&1; then
          continue # a Docker engine runs here now and needs forwarding
        fi
        [[ "$(sysctl -n "$a" 2>/dev/null)" == "$b" ]] || sysctl -qw "$a=$b" >/dev/null 2>&1 || true
        ;;
      propagation)
        # a = propagation flags (e.g. "private" or "shared"), b = mount point
        mountpoint -q "$b" 2>/dev/null || continue
        [[ "$(findmnt -rn -o PROPAGATION --target "$b" 2>/dev/null | head -1)" == "$a" ]] && continue
        case "$a" in
          private) mount --make-private "$b" 2>/dev/null || true ;;
          shared) mount --make-shared "$b" 2>/dev/null || true ;;
          private,slave | slave) mount --make-slave "$b" 2>/dev/null || true ;;
        esac
        ;;
    esac
  done <"$HOST_STATE"
}
