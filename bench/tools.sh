#!/usr/bin/env bash
# Build the benchmark's Go tools from their modules into the shared binary cache, once per
# version: kwok (simulated nodes) and kube-state-metrics (the peer consumer). Prints each path.
set -euo pipefail

CACHE=${PODTRAIL_BIN_CACHE:-/var/cache/podtrail/bin}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
KSM_VERSION=${KSM_VERSION:-v2.16.0}

log() { printf '[bench tools] %s\n' "$*" >&2; }

need_go() {
  command -v go >/dev/null 2>&1 || { log "go is not on PATH (needed once to build $1)"; exit 1; }
}

kwok() {
  local dir="$CACHE/kwok-$KWOK_VERSION" bin
  bin="$dir/kwok"
  if [[ ! -x $bin ]]; then
    need_go kwok
    log "building kwok $KWOK_VERSION into $dir (a few minutes, once)"
    mkdir -p "$dir.tmp"
    GOBIN="$dir.tmp" GOFLAGS=-buildvcs=false go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    log "kwok $KWOK_VERSION built"
  fi
  echo "$bin"
}

kube_state_metrics() {
  local dir="$CACHE/kube-state-metrics-$KSM_VERSION" bin src work
  bin="$dir/kube-state-metrics"
  if [[ ! -x $bin ]]; then
    need_go kube-state-metrics
    log "building kube-state-metrics $KSM_VERSION into $dir (a few minutes, once)"
    # `go install` trips on the checksum database here: fetch the module itself without it,
    # then build in a copy, where its dependencies are still checked against its own go.sum.
    src=$(cd /tmp && GOSUMDB=off GOFLAGS=-mod=mod go mod download -json \
      "k8s.io/kube-state-metrics/v2@$KSM_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $src ]] || { log "module download failed"; exit 1; }
    work=$(mktemp -d)
    cp -r "$src/." "$work/"
    chmod -R u+w "$work"
    mkdir -p "$dir.tmp"
    (cd "$work" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -o "$dir.tmp/kube-state-metrics" .)
    rm -rf "$work" "$dir" && mv "$dir.tmp" "$dir"
    log "kube-state-metrics $KSM_VERSION built"
  fi
  echo "$bin"
}

case "${1:-all}" in
  kwok) kwok ;;
  kube-state-metrics) kube_state_metrics ;;
  all) kwok; kube_state_metrics ;;
  *) log "usage: $0 [kwok|kube-state-metrics|all]"; exit 2 ;;
esac
