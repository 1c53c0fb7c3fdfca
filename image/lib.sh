# shellcheck shell=bash disable=SC2034 # settings read by the scripts that source this file
# Shared settings of the image tooling; sourced, never run. Every value can be overridden
# from the environment.
#
# Two ways to build:
# - "host" engine: a Docker engine that is already there (a CI runner, a workstation), found
#   through DOCKER_HOST or the default socket; the Dockerfile's own base image is used.
# - "local" engine: Debian's docker.io started by image/engine-up.sh with its own data root and
#   socket, for machines without a registry; the base image is built from Debian's packages
#   (image/base.sh) and passed as BASE_IMAGE.
# IMAGE_ENGINE=auto (default) picks "host" when a Docker engine answers, else "local".

IMAGE_TOOLING_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$IMAGE_TOOLING_DIR/.." && pwd)

IMAGE=${IMAGE:-podtrail.local/podtrail:dev}
RELEASE_IMAGE_NAME=${RELEASE_IMAGE_NAME:-ghcr.io/podtrail/podtrail}
IMAGE_ENGINE=${IMAGE_ENGINE:-auto}
LOCAL_BASE_IMAGE=${LOCAL_BASE_IMAGE:-podtrail.local/python-base:bookworm}
WHEEL_DIR=${WHEEL_DIR:-$REPO_ROOT/build/wheels}
BUILD_DIR=${BUILD_DIR:-$REPO_ROOT/build}

# The local engine.
ENGINE_ROOT=${PODTRAIL_DOCKER_ROOT:-/var/lib/podtrail/docker}
ENGINE_STATE=${PODTRAIL_DOCKER_STATE:-/var/lib/podtrail/docker-engine}
ENGINE_EXEC_ROOT=${PODTRAIL_DOCKER_EXEC_ROOT:-/run/podtrail-docker}
ENGINE_SOCKET=${PODTRAIL_DOCKER_SOCKET:-/run/podtrail-docker.sock}
ENGINE_PIDFILE=$ENGINE_STATE/dockerd.pid
ENGINE_LOG=$ENGINE_STATE/dockerd.log
ENGINE_RUNTIME_NAME=podtrail-runc
# Debian's CLI matches Debian's engine and has the classic builder; the preinstalled 28.x CLI
# has no buildx plugin.
LOCAL_DOCKER_CLI=${LOCAL_DOCKER_CLI:-/usr/bin/docker}

CACHE_DIR=${PODTRAIL_CACHE_DIR:-/var/cache/podtrail}
# Bump when base.sh or image/rootfs.sh changes what goes into the base image: the cached rootfs
# is keyed by it.
BASE_RECIPE=r1
BASE_SUITE=bookworm

# The host-process cluster's bridge must keep forwarding while dockerd runs (dockerd may set
# the FORWARD policy to DROP). Read from the cluster tooling when it names it.
CLUSTER_BRIDGE=${CLUSTER_BRIDGE:-}
if [[ -z $CLUSTER_BRIDGE && -f $REPO_ROOT/cluster/lib/common.sh ]]; then
  CLUSTER_BRIDGE=$(
    # shellcheck source=/dev/null # read for BRIDGE_NAME only, in this subshell: not followed
    source "$REPO_ROOT/cluster/lib/common.sh" >/dev/null 2>&1
    printf '%s' "${BRIDGE_NAME:-${CLUSTER_BRIDGE:-${POD_BRIDGE:-}}}"
  )
fi
CLUSTER_BRIDGE=${CLUSTER_BRIDGE:-podtrail0}

ilog() { printf '%s [image] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
idie() { printf '%s [image] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The machine's uplink: the interface of the default route.
uplink_interface() {
  ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}'
}

local_engine_answers() {
  [[ -S $ENGINE_SOCKET ]] && "$LOCAL_DOCKER_CLI" -H "unix://$ENGINE_SOCKET" version >/dev/null 2>&1
}

host_engine_answers() {
  command -v docker >/dev/null 2>&1 && docker version >/dev/null 2>&1
}

# Sets DOCKER (the CLI command line as an array) and ENGINE_KIND (host|local).
select_engine() {
  case $IMAGE_ENGINE in
    host) ENGINE_KIND=host ;;
    local) ENGINE_KIND=local ;;
    auto)
      if host_engine_answers; then ENGINE_KIND=host; else ENGINE_KIND=local; fi ;;
    *) idie "IMAGE_ENGINE must be auto, host or local (got '$IMAGE_ENGINE')" ;;
  esac
  if [[ $ENGINE_KIND == host ]]; then
    DOCKER=(docker)
  else
    DOCKER=("$LOCAL_DOCKER_CLI" -H "unix://$ENGINE_SOCKET")
    export DOCKER_BUILDKIT=0
  fi
}

# The cluster to act on, by the project's one rule (cluster/context.sh); arguments as
# choose_cluster's (--ensure, --changes WHAT). Sets KUBECONFIG, KUBECTL, KUBE_CONTEXT,
# CLUSTER_FLAVOUR.
# shellcheck source=../cluster/context.sh
source "$REPO_ROOT/cluster/context.sh"
resolve_kube() { choose_cluster "$@" || exit 1; }

# The operator's namespace and Deployment in manifests/.
OPERATOR_NAMESPACE=podtrail-system
OPERATOR_DEPLOYMENT=podtrail
