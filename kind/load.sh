#!/usr/bin/env bash
# Loads images into the nodes of the kind cluster $KIND_CLUSTER (no registry):
#   kind/load.sh                  the operator's image $IMAGE (when built) and the tests' images
#   kind/load.sh IMAGE|TAR ...    those: an image of the engine, or a docker-archive tar
# A node that already holds the image (same image ID) is skipped; the others import the
# docker-archive into their containerd all at once (`ctr -n k8s.io images import --no-unpack`,
# as kind preloads its own images: the layers are unpacked by the first container that uses
# them, on the node that runs it). The tests' images are the local cluster's
# (cluster/images/build-images.sh: podtrail.local/testbox:1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

select_kind_mode
select_kubeconfig
ensure_kind
mapfile -t NODES < <("$KIND" get nodes --name "$KIND_CLUSTER" 2>/dev/null)
((${#NODES[@]})) || kdie "no kind cluster $KIND_CLUSTER: run kind/up.sh first"

# The nodes lacking image NAME with ID.
nodes_without() {
  local name=$1 id=$2 node have
  for node in "${NODES[@]}"; do
    have=$("${DOCKER[@]}" exec "$node" crictl inspecti -o go-template --template '{{.status.id}}' "$name" 2>/dev/null || true)
    [[ $have == "$id" ]] || echo "$node"
  done
}

load_tar() {  # tar, name, id
  local tar=$1 name=$2 id=$3 missing
  missing=$(nodes_without "$name" "$id" | paste -sd, -)
  if [[ -z $missing ]]; then
    klog "$name is on every node"
    return 0
  fi
  klog "loading $name into $missing"
  local node pids=() failed=0
  for node in ${missing//,/ }; do
    "${DOCKER[@]}" exec -i "$node" ctr -n k8s.io images import --no-unpack --all-platforms - <"$tar" >/dev/null &
    pids+=($!)
  done
  for node in "${pids[@]}"; do wait "$node" || failed=1; done
  ((failed == 0)) || kdie "loading $name failed"
  missing=$(nodes_without "$name" "$id" | paste -sd, -)
  [[ -z $missing ]] || kdie "$name is still missing on $missing"
}

load_archive() {
  local tar=$1 name id
  read -r name id < <(tar -xOf "$tar" manifest.json |
    python3 -c 'import json, sys; m = json.load(sys.stdin)[0]; print(m["RepoTags"][0], "sha256:" + m["Config"].split(".")[0].split("/")[-1])')
  load_tar "$tar" "$name" "$id"
}

load_image() {
  local image=$1 id missing tar
  id=$("${DOCKER[@]}" image inspect --format '{{.Id}}' "$image") || kdie "no image $image in the engine"
  missing=$(nodes_without "$image" "$id")
  if [[ -z $missing ]]; then
    klog "$image is on every node"
    return 0
  fi
  mkdir -p "$KIND_DIR/images"
  tar=$(mktemp "$KIND_DIR/images/image-XXXXXX.tar")
  "${DOCKER[@]}" save -o "$tar" "$image"
  load_tar "$tar" "$image" "$id"
  rm -f "$tar"
}

load_one() {
  if [[ -f $1 ]]; then load_archive "$1"; else load_image "$1"; fi
}

if (($#)); then
  for what in "$@"; do load_one "$what"; done
  exit 0
fi

if "${DOCKER[@]}" image inspect "$IMAGE" >/dev/null 2>&1; then
  load_image "$IMAGE"
else
  klog "no operator image $IMAGE in the engine (make image builds it): not loaded"
fi
if listed=$(bash "$REPO_ROOT/cluster/images/build-images.sh" 2>/dev/null); then
  mapfile -t tars <<<"$listed" # one path a line
  for tar in "${tars[@]}"; do
    [[ -n $tar ]] || continue
    [[ $(basename "$tar") == pause-* ]] && continue
    load_archive "$tar"
  done
else
  klog "the tests' images could not be built here (cluster/images/build-images.sh): not loaded"
fi
