#!/usr/bin/env bash
# Makes images available to the nodes of the chosen cluster (cluster/context.sh) without a
# registry, the way that cluster takes them:
#   image/load.sh                 the operator's image $IMAGE (make image builds it)
#   image/load.sh IMAGE|TAR ...   images of the engine, or docker-archive tars (the tests' images)
#   image/load.sh --pin IMAGE     also prints the reference pods should use: NAME@sha256:DIGEST
#                                 where the cluster's containerd can be told the digest (the
#                                 local cluster, kind), else the image's own name
# kind: kind/load.sh (kind's node containers' containerd); minikube: `minikube image load`;
# k3d: `k3d image import`; the project's local cluster: cluster/images/import.sh; docker-desktop
# runs on the engine's own images. Any other cluster pulls from a registry: make deploy REGISTRY=...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

pin=0
if [[ ${1:-} == --pin ]]; then pin=1; shift; fi
(($#)) || set -- "$IMAGE"
resolve_kube --changes "load $* into the nodes"
select_engine
[[ $ENGINE_KIND == local ]] && export DOCKER_HOST=unix://$ENGINE_SOCKET

# An engine image as a docker-archive in build/image/ (a tar argument is used as it is).
as_archive() {
  local what=$1 archive
  if [[ -f $what ]]; then printf '%s\n' "$what"; return; fi
  "${DOCKER[@]}" image inspect "$what" >/dev/null 2>&1 || idie "no image $what: run make image first"
  mkdir -p "$BUILD_DIR/image"
  archive=$BUILD_DIR/image/$(basename "${what//:/_}").tar
  "${DOCKER[@]}" save --output "$archive.tmp" "$what"
  mv "$archive.tmp" "$archive"
  printf '%s\n' "$archive"
}

# The nodes whose containerd the images are loaded into, one a line (kind and the local cluster).
cluster_nodes() {
  case $CLUSTER_FLAVOUR in
    kind)
      local cluster=${KIND_CLUSTER:-${KUBE_CONTEXT#kind-}}
      KIND_CLUSTER=$cluster bash "$REPO_ROOT/kind/kind.sh" get nodes --name "$cluster" 2>/dev/null ;;
    local)
      local_cluster_setting NODE_NAME ;;
  esac
}

# Runs ctr in the k8s.io namespace of a node's containerd: node_ctr NODE ARGUMENT...
node_ctr() {
  local node=$1 ctr_command
  shift
  case $CLUSTER_FLAVOUR in
    kind) ctr_command=("${DOCKER[@]}" exec "$node" ctr) ;;
    local) ctr_command=(ctr -a "$(local_cluster_setting CONTAINERD_SOCK)") ;;
  esac
  "${ctr_command[@]}" -n k8s.io "$@"
}

# A setting of the local cluster (cluster/lib/common.sh), read in a subshell:
# local_cluster_setting NAME
local_cluster_setting() (
  # shellcheck source=../cluster/lib/common.sh
  source "$REPO_ROOT/cluster/lib/common.sh" >/dev/null 2>&1
  printf '%s\n' "${!1}"
)

# NAME@sha256:DIGEST of an image loaded on every node: the digest of its manifest in the nodes'
# containerd, tagged there as NAME@DIGEST so that the kubelet finds the pinned reference without
# pulling. Prints the plain name where the nodes' containerd cannot be reached.
pinned_reference() {
  local image=$1 name=${1%:*} node digest='' found
  [[ ${image##*/} == *:* ]] || name=$image
  while read -r node; do
    [[ -n $node ]] || continue
    found=$(node_ctr "$node" images ls 2>/dev/null | awk -v ref="$image" '$1 == ref {print $3}')
    [[ -n $found ]] || idie "$image is not on node $node after loading"
    [[ -z $digest || $digest == "$found" ]] || idie "the nodes hold different manifests for $image"
    digest=$found
    node_ctr "$node" images tag --force "$image" "$name@$digest" >/dev/null
  done < <(cluster_nodes)
  if [[ -n $digest ]]; then printf '%s@%s\n' "$name" "$digest"; else printf '%s\n' "$image"; fi
}

load() {
  case $CLUSTER_FLAVOUR in
    kind)
      KIND_CLUSTER=${KIND_CLUSTER:-${KUBE_CONTEXT#kind-}} bash "$REPO_ROOT/kind/load.sh" "$@" >&2 ;;
    local)
      local archives=() what
      for what in "$@"; do archives+=("$(as_archive "$what")"); done
      bash "$REPO_ROOT/cluster/images/import.sh" "${archives[@]}" ;;
    minikube)
      command -v minikube >/dev/null || idie "no minikube on PATH to load images with"
      for what in "$@"; do minikube -p "$KUBE_CONTEXT" image load "$what" >&2; done ;;
    k3d)
      command -v k3d >/dev/null || idie "no k3d on PATH to load images with"
      k3d image import --cluster "${KUBE_CONTEXT#k3d-}" "$@" >&2 ;;
    docker-desktop)  # its nodes run the host engine's images: archives are loaded there
      for what in "$@"; do if [[ -f $what ]]; then docker load --input "$what" >&2; fi; done
      ilog "docker-desktop runs the engine's images" ;;
    *)
      idie "context $KUBE_CONTEXT pulls from a registry: push the image there (make deploy REGISTRY=host/path)" ;;
  esac
}

load "$@"
if ((pin)); then pinned_reference "$1"; fi
