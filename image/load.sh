#!/usr/bin/env bash
# Makes $IMAGE (default podtrail.local/podtrail:dev) available to the cluster's nodes without a
# registry:
# - a kind cluster (current context kind-NAME, or KIND_CLUSTER set): `kind load docker-image`;
# - the project's local cluster: `docker save` to build/image/ and cluster/images/import.sh
#   into its containerd.
# LOAD_TARGET=auto|kind|local chooses explicitly.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

select_engine
resolve_kube
"${DOCKER[@]}" image inspect "$IMAGE" >/dev/null 2>&1 || idie "no image $IMAGE: run make image first"

LOAD_TARGET=${LOAD_TARGET:-auto}
if [[ $LOAD_TARGET == auto ]]; then
  context=$("$KUBECTL" config current-context 2>/dev/null || true)
  if [[ -n ${KIND_CLUSTER:-} || $context == kind-* ]]; then LOAD_TARGET=kind; else LOAD_TARGET=local; fi
fi

case $LOAD_TARGET in
  kind)
    context=${context:-$("$KUBECTL" config current-context 2>/dev/null || true)}
    cluster=${KIND_CLUSTER:-${context#kind-}}
    [[ $ENGINE_KIND == local ]] && export DOCKER_HOST=unix://$ENGINE_SOCKET
    ilog "loading $IMAGE into kind cluster $cluster"
    # The project's kind tooling builds kind itself and works with the local engine.
    KIND_CLUSTER=$cluster bash "$REPO_ROOT/kind/load.sh" "$IMAGE" >&2
    ;;
  local)
    [[ -f $REPO_ROOT/cluster/images/import.sh ]] || idie "no cluster/images/import.sh"
    mkdir -p "$BUILD_DIR/image"
    archive=$BUILD_DIR/image/$(basename "${IMAGE//:/_}").tar
    ilog "saving $IMAGE to ${archive#"$REPO_ROOT"/}"
    "${DOCKER[@]}" save --output "$archive.tmp" "$IMAGE"
    mv "$archive.tmp" "$archive"
    bash "$REPO_ROOT/cluster/images/import.sh" "$archive"
    ;;
  *) idie "LOAD_TARGET must be auto, kind or local (got '$LOAD_TARGET')" ;;
esac
