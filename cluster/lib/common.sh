# shellcheck shell=bash disable=SC2034 # settings read by the scripts that source this file
# Shared settings of the local cluster tooling; sourced, never run. Every path can be overridden.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.5}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.4}
CRICTL_VERSION=${CRICTL_VERSION:-v1.34.0}
CACHE_DIR=${PODTRAIL_CACHE_DIR:-/var/cache/podtrail}
K8S_BIN_DIR="$CACHE_DIR/bin/kubernetes-$K8S_VERSION"
ETCD_BIN_DIR="$CACHE_DIR/bin/etcd-$ETCD_VERSION"
COREDNS_BIN_DIR="$CACHE_DIR/bin/coredns-$COREDNS_VERSION"
CRICTL_BIN_DIR="$CACHE_DIR/bin/crictl-$CRICTL_VERSION"
IMAGE_CACHE_DIR="$CACHE_DIR/images"
CLUSTER_DIR=${PODTRAIL_CLUSTER_DIR:-/var/lib/podtrail/cluster}
KUBECONFIG_PATH="$CLUSTER_DIR/kubeconfig"

# Layout below CLUSTER_DIR. Everything except logs/ is removed by down.sh.
PKI_DIR="$CLUSTER_DIR/pki"
CONF_DIR="$CLUSTER_DIR/conf"
LOG_DIR="$CLUSTER_DIR/logs"
RUN_DIR="$CLUSTER_DIR/run"
BIN_LINK_DIR="$CLUSTER_DIR/bin"
ETCD_DATA_DIR="$CLUSTER_DIR/etcd"
KUBELET_ROOT="$CLUSTER_DIR/kubelet"
CONTAINERD_ROOT="$CLUSTER_DIR/containerd"
CNI_CONF_DIR="$CLUSTER_DIR/cni/net.d"
CNI_IPAM_DIR="$CLUSTER_DIR/cni/ipam"
CNI_BIN_DIR=${PODTRAIL_CNI_BIN_DIR:-/usr/lib/cni}
# containerd's state (sockets, task bundles) lives under /run, like the system's own.
CONTAINERD_STATE=${PODTRAIL_CONTAINERD_STATE:-/run/podtrail/containerd}
CONTAINERD_SOCK="$CONTAINERD_STATE/containerd.sock"
LOCK_FILE="${CLUSTER_DIR%/}.lock"

# Network: a bridge of the project's own; its gateway is the node IP and the advertise address.
BRIDGE_NAME=${PODTRAIL_BRIDGE:-podtrail0}
POD_CIDR=${PODTRAIL_POD_CIDR:-10.88.0.0/16}
NODE_IP=${PODTRAIL_NODE_IP:-10.88.0.1}
SERVICE_CIDR=${PODTRAIL_SERVICE_CIDR:-10.0.0.0/24}
KUBERNETES_SERVICE_IP=${PODTRAIL_KUBERNETES_SERVICE_IP:-10.0.0.1}
CLUSTER_DOMAIN=cluster.local
DNS_IP="$NODE_IP"
NODE_NAME=${PODTRAIL_NODE_NAME:-podtrail-node}
CNI_NETWORK_NAME=podtrail
APISERVER_PORT=6443
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
ETCD_CLIENT_URL="http://127.0.0.1:2379"
ETCD_PEER_URL="http://127.0.0.1:2380"

# Images made by cluster/images/build-images.sh (no registry: imported into containerd).
PAUSE_IMAGE=podtrail.local/pause:1
TESTBOX_IMAGE=podtrail.local/testbox:1

# Components in start order; down.sh stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy coredns)

log() { printf '%s [cluster] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '%s [cluster] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The binary a component runs.
component_bin() {
  case "$1" in
    etcd) echo "$ETCD_BIN_DIR/etcd" ;;
    coredns) echo "$COREDNS_BIN_DIR/coredns" ;;
    containerd) command -v containerd || echo /usr/bin/containerd ;;
    *) echo "$K8S_BIN_DIR/$1" ;;
  esac
}

# Prints the recorded PID of a component when that process is still the one we started:
# alive, running the component's binary, with our cluster folder or socket on its command line.
component_pid() {
  local name=$1 pidfile="$RUN_DIR/$1.pid" pid exe
  [[ -s "$pidfile" ]] || return 1
  pid=$(<"$pidfile")
  [[ "$pid" =~ ^[0-9]+$ && -d /proc/$pid ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [[ "${exe% (deleted)}" == "$(component_bin "$name")" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -e "$CLUSTER_DIR" -e "$CONTAINERD_STATE" || return 1
  echo "$pid"
}

# Processes of ours that no PID file names any more (e.g. a lost run folder): our binaries
# whose command line names our cluster folder.
stray_pids() {
  local p exe cmd bins=() b
  for b in "${COMPONENTS[@]}"; do bins+=("$(component_bin "$b")"); done
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    exe=${exe% (deleted)}
    for b in "${bins[@]}"; do
      [[ "$exe" == "$b" ]] || continue
      cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
      if [[ "$cmd" == *"$CLUSTER_DIR"* || "$cmd" == *"$CONTAINERD_STATE"* ]]; then echo "${p#/proc/}"; fi
    done
  done
}

# containerd shims serving our containerd (they outlive it).
shim_pids() {
  local p cmd
  for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ "$cmd" == *containerd-shim* && "$cmd" == *"-address $CONTAINERD_SOCK "* ]] && echo "${p#/proc/}"
  done
  return 0
}

# Every process inside the kubepods cgroups (the containers the kubelet started).
kubepods_pids() {
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/unified/kubepods; do
    [[ -d "$d" ]] || continue
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}

# Stops a process: TERM, then KILL after the given seconds.
stop_pid() {
  local pid=$1 wait_s=${2:-10} i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < wait_s * 10; i++)); do
    [[ -d /proc/$pid ]] || return 0
    grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do [[ -d /proc/$pid ]] || return 0; sleep 0.1; done
}

kubectl_admin() { "$K8S_BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }
