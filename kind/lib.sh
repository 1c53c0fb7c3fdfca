# shellcheck shell=bash disable=SC2034 # settings read by the scripts that source this file
# Shared settings of the kind tooling; sourced, never run. Every value can be overridden from
# the environment.
#
# Two modes (KIND_MODE):
# - online: a registry is reachable (hosted CI). The node image is the public kindest/node of
#   K8S_VERSION (or KIND_NODE_IMAGE), kind's own network and CNI (kindnetd); the Docker engine
#   is the one already there.
# - offline: no registry (this machine). The project's own Docker engine (image/engine-up.sh),
#   a node image assembled locally (kind/node-image.sh) from Debian's packages, kind's base-image
#   files read from the kind Go module and the locally built Kubernetes binaries, a network of
#   its own and a stand-in pod network (kind/node/podtrail-cni).
# KIND_MODE=auto (default): online when KIND_NODE_IMAGE is set or a Docker engine other than
# the project's own answers (a CI runner, a workstation), else offline.

KIND_TOOLING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$KIND_TOOLING_DIR/.." && pwd)

# The image tooling's settings: the local engine's socket, its CLI, the operator image's name.
# shellcheck source=../image/lib.sh
source "$REPO_ROOT/image/lib.sh"
# The versions and caches of the local cluster (the same Kubernetes binaries).
K8S_VERSION=${K8S_VERSION:-v1.34.4}
export K8S_VERSION
# shellcheck source=../cluster/lib/common.sh
source "$REPO_ROOT/cluster/lib/common.sh"

KIND_VERSION=${KIND_VERSION:-v0.33.0}
# The node images of the online mode: the ones the release notes of kind v0.33.0 list, each by
# the digest they give. kind supports a node image only with the release that built it, and a
# kindest/node tag may point to a build for another release: only the digest names the right
# one. Keyed by Kubernetes minor (K8S_VERSION's picks the image); change the table with
# KIND_VERSION. KIND_NODE_IMAGE, when set, wins.
declare -gA KIND_NODE_IMAGES=(
  [v1.37]=kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5
  [v1.36]=kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed
  [v1.35]=kindest/node:v1.35.8@sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0
  [v1.34]=kindest/node:v1.34.11@sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d
)
# The online node image for K8S_VERSION (empty: kind v0.33.0 published none for its minor).
KIND_ONLINE_NODE_IMAGE=${KIND_NODE_IMAGE:-${KIND_NODE_IMAGES[${K8S_VERSION%.*}]:-}}
KIND_CLUSTER=${KIND_CLUSTER:-podtrail}
KIND_WORKERS=${KIND_WORKERS:-1}
KIND_MODE=${KIND_MODE:-auto}
KIND_BIN_DIR=$CACHE_DIR/bin/kind-$KIND_VERSION
KIND=$KIND_BIN_DIR/kind
KIND_CACHE=${KIND_CACHE:-$CACHE_DIR/kind}
if [[ -z ${KIND_DIR:-} ]]; then
  if [[ $(id -u) == 0 ]]; then KIND_DIR=/var/lib/podtrail/kind; else KIND_DIR=$REPO_ROOT/build/kind; fi
fi
# What the nodes of any kind cluster in the engine changed on the host: saved by the first
# up.sh, put back by the down.sh that leaves no kind node behind.
KIND_STATE=$KIND_DIR/host-state
KIND_LOCK=${KIND_DIR%/}.lock

# The node image of the offline mode and what goes into it.
KIND_SUITE=bookworm
# Bump when node-image.sh or image/rootfs.sh changes what the debootstrap rootfs holds (the
# cached tar is keyed by it and by the package list).
KIND_ROOTFS_RECIPE=r1
KIND_NODE_REPO=podtrail.local/kind-node
# The cluster's own network in offline mode: IPv4 only (no IPv6 forwarding turned on on the
# host), a /24 so that each node's last address byte is unique: node 10.89.0.N gets the pods
# of 10.244.N.0/24 (see kind/node/podtrail-cni).
KIND_NETWORK=${KIND_NETWORK:-podtrail-kind}
KIND_SUBNET=${KIND_SUBNET:-10.89.0.0/24}
KIND_POD_SUBNET=10.244.0.0/16
# The controller-manager's node-monitor grace period: a stopped node is NotReady after it
# (Kubernetes' default is 50 s).
KIND_NODE_MONITOR_GRACE=${KIND_NODE_MONITOR_GRACE:-20s}

# Images loaded into the cluster besides the operator's: the tests' images.
TEST_IMAGE_TARS_GLOB="$IMAGE_CACHE_DIR/testbox-1-*.tar"

klog() { printf '%s [kind] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
kdie() { printf '%s [kind] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The kind binary, built from its Go module into the version-keyed cache on first use (under
# build/ when the cache cannot be written, e.g. a CI runner's user).
ensure_kind() {
  [[ -x $KIND ]] && return 0
  if ! mkdir -p "$KIND_BIN_DIR" 2>/dev/null || [[ ! -w $KIND_BIN_DIR ]]; then
    KIND_BIN_DIR=$REPO_ROOT/build/bin/kind-$KIND_VERSION
    KIND=$KIND_BIN_DIR/kind
    [[ -x $KIND ]] && return 0
    mkdir -p "$KIND_BIN_DIR"
  fi
  command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
  command -v go >/dev/null 2>&1 || kdie "no Go toolchain to build kind $KIND_VERSION with"
  klog "building kind $KIND_VERSION from its Go module"
  local started=$SECONDS
  HOME=${HOME:-/root} GOBIN=$KIND_BIN_DIR GOFLAGS=-trimpath go install "sigs.k8s.io/kind@$KIND_VERSION" >&2 ||
    kdie "go install sigs.k8s.io/kind@$KIND_VERSION failed"
  klog "built kind in $((SECONDS - started)) s"
}

# The folder of the kind module in the Go module cache (downloaded when missing): the source of
# the base-image files that go into the node image.
kind_module_dir() {
  command -v go >/dev/null 2>&1 || export PATH="/usr/local/go/bin:$PATH"
  local dir
  dir=$(HOME=${HOME:-/root} GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') || kdie "cannot get the kind module $KIND_VERSION"
  [[ -d $dir/images/base/files ]] || kdie "no images/base/files in $dir"
  printf '%s\n' "$dir"
}

# Decides the mode and the engine. Sets KIND_MODE (online|offline), DOCKER (the CLI as an
# array), and exports DOCKER_HOST and PATH for kind (which calls `docker`).
select_kind_mode() {
  case $KIND_MODE in
    online | offline) ;;
    auto)
      if [[ -n ${KIND_NODE_IMAGE:-} ]] || host_engine_answers; then KIND_MODE=online; else KIND_MODE=offline; fi ;;
    *) kdie "KIND_MODE must be auto, online or offline (got '$KIND_MODE')" ;;
  esac
  if [[ $KIND_MODE == offline ]]; then
    IMAGE_ENGINE=local
    export DOCKER_HOST=unix://$ENGINE_SOCKET
    # kind runs `docker`: the engine's own CLI (Debian's, matching the engine) first in PATH.
    mkdir -p "$KIND_DIR/bin"
    ln -sfn "$LOCAL_DOCKER_CLI" "$KIND_DIR/bin/docker"
    export PATH="$KIND_DIR/bin:$PATH"
  else
    IMAGE_ENGINE=${IMAGE_ENGINE_FOR_KIND:-auto}
  fi
  select_engine
  if [[ $KIND_MODE == online && $ENGINE_KIND == local ]]; then
    export DOCKER_HOST=unix://$ENGINE_SOCKET
  fi
}

# The kubeconfig kind writes: KIND_KUBECONFIG; online (CI) the KUBECONFIG the job names;
# else $KIND_DIR/kubeconfig. The local cluster's kubeconfig is never written to.
select_kubeconfig() {
  if [[ -n ${KIND_KUBECONFIG:-} ]]; then
    :
  elif [[ $KIND_MODE == online && -n ${KUBECONFIG:-} && ${KUBECONFIG%%:*} != "$KUBECONFIG_PATH" ]]; then
    KIND_KUBECONFIG=${KUBECONFIG%%:*}
  else
    KIND_KUBECONFIG=$KIND_DIR/kubeconfig
  fi
  [[ $KIND_KUBECONFIG != "$KUBECONFIG_PATH" ]] || kdie "refusing to write kind's kubeconfig over the local cluster's ($KUBECONFIG_PATH)"
  export KIND_KUBECONFIG
}

# kubectl matching the cluster: the locally built one when there is one.
select_kubectl() {
  if [[ -x $K8S_BIN_DIR/kubectl ]]; then KUBECTL=$K8S_BIN_DIR/kubectl; else KUBECTL=$(command -v kubectl || true); fi
  [[ -n $KUBECTL ]] || kdie "no kubectl"
}

kctl() { "$KUBECTL" --kubeconfig "$KIND_KUBECONFIG" "$@"; }

# The node containers of the cluster (any state), by kind's label.
cluster_containers() {
  "${DOCKER[@]}" ps -a --filter "label=io.x-k8s.kind.cluster=$KIND_CLUSTER" --format '{{.Names}}' 2>/dev/null | sort
}

# A lock shared by up.sh and down.sh.
take_lock() {
  mkdir -p "$(dirname "$KIND_LOCK")"
  exec {KIND_LOCK_FD}>"$KIND_LOCK"
  flock -w 900 "$KIND_LOCK_FD" || kdie "another kind/up.sh or kind/down.sh holds $KIND_LOCK"
}
