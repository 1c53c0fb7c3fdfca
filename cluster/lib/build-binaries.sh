#!/usr/bin/env bash
# Builds the pinned Kubernetes components, etcd, CoreDNS and crictl from their upstream Go modules
# into a cache outside the repository, keyed by version. A second run finds the binaries and
# builds nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Go from its usual place when PATH lacks it; its caches need a HOME.
export HOME=${HOME:-/root}
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
need_go() { command -v go >/dev/null || die "Go is needed to build the cluster binaries (not in PATH nor /usr/local/go)"; }

# `go mod tidy` in a build folder: quietly, and once more showing its errors when that fails.
# Never in another folder: a failed cd ends the subshell (and so the build) instead.
go_mod_tidy() {
  (
    cd "$1" || exit
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
  )
}

K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)

build_kubernetes() {
  local out="$K8S_BIN_DIR" work="$CACHE_DIR/src/k8s-$K8S_VERSION"
  local missing=()
  for c in "${K8S_COMPONENTS[@]}"; do [[ -x "$out/$c" ]] || missing+=("$c"); done
  if ((${#missing[@]} == 0)); then log "kubernetes $K8S_VERSION binaries cached in $out"; return; fi
  need_go
  mkdir -p "$work" "$out"
  log "resolving k8s.io/kubernetes@$K8S_VERSION (its staging modules are pinned to v0.${K8S_VERSION#v1.})"
  local upstream_mod
  upstream_mod=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module podtrail.io/cluster/k8s-build"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # k8s.io/kubernetes replaces its staging modules with local folders; point each at its release.
    grep -E '=> \./staging/' "$upstream_mod" | awk -v v="v0.${K8S_VERSION#v1.}" '{print "replace " $1 " => " $1 " " v}'
  } >"$work/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for c in "${K8S_COMPONENTS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ")"
  } >"$work/tools.go"
  go_mod_tidy "$work"
  for c in "${missing[@]}"; do
    local started=$SECONDS
    log "building $c $K8S_VERSION ..."
    (cd "$work" && go build -trimpath -o "$out/$c.tmp" \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)" \
      "k8s.io/kubernetes/cmd/$c")
    mv "$out/$c.tmp" "$out/$c"
    log "built $c in $((SECONDS - started)) s"
  done
}

build_etcd() {
  local out="$ETCD_BIN_DIR" work="$CACHE_DIR/src/etcd-$ETCD_VERSION"
  if [[ -x "$out/etcd" ]]; then log "etcd $ETCD_VERSION cached in $out"; return; fi
  need_go
  mkdir -p "$work" "$out"
  cat >"$work/go.mod" <<MOD
module podtrail.io/cluster/etcd-build

go 1.24

require (
	go.etcd.io/etcd/api/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/client/v3 $ETCD_VERSION
	go.etcd.io/etcd/pkg/v3 $ETCD_VERSION
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
)
MOD
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$work/tools.go"
  go_mod_tidy "$work"
  local started=$SECONDS
  log "building etcd $ETCD_VERSION ..."
  (cd "$work" && go build -trimpath -ldflags "-s -w" -o "$out/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$out/etcd.tmp" "$out/etcd"
  log "built etcd in $((SECONDS - started)) s"
}

# Tools with a plain main module: `go install module@version` into a versioned cache folder.
go_install_cached() {
  local name=$1 pkg=$2 version=$3 out=$4
  if [[ -x "$out/$name" ]]; then log "$name $version cached in $out"; return; fi
  need_go
  mkdir -p "$out"
  local tmp started=$SECONDS
  tmp=$(mktemp -d "$out/.build.XXXXXX")
  log "building $name $version (go install $pkg@$version) ..."
  GOBIN="$tmp" GOFLAGS=-trimpath go install -ldflags "-s -w" "$pkg@$version"
  mv "$tmp/$name" "$out/$name"
  rmdir "$tmp"
  log "built $name in $((SECONDS - started)) s"
}

mkdir -p "$CACHE_DIR"
# One build at a time on this machine: a second caller waits, then finds everything cached.
exec 8>"$CACHE_DIR/.build.lock"
if ! flock -n 8; then
  log "another build of the cluster binaries is running; waiting for it"
  flock 8
fi
build_kubernetes
build_etcd
go_install_cached coredns github.com/coredns/coredns "$COREDNS_VERSION" "$COREDNS_BIN_DIR"
go_install_cached crictl sigs.k8s.io/cri-tools/cmd/crictl "$CRICTL_VERSION" "$CRICTL_BIN_DIR"
