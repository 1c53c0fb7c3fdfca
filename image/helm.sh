#!/usr/bin/env bash
# Prints the path of helm (the chart tool; charts/podtrail), building it from its Go module
# into the version-keyed cache on first use: $CACHE_DIR/bin/helm-$VERSION/.
#   bash image/helm.sh                  -> /var/cache/podtrail/bin/helm-v3.22.0/helm
#   "$(bash image/helm.sh)" lint --strict charts/podtrail
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HELM_VERSION=${HELM_VERSION:-v3.22.0}
bin_dir=$CACHE_DIR/bin/helm-$HELM_VERSION
if [[ ! -x $bin_dir/helm ]]; then
  command -v go >/dev/null 2>&1 || idie "no Go toolchain to build helm with"
  mkdir -p "$bin_dir"
  ilog "building helm $HELM_VERSION from its Go module"
  GOBIN=$bin_dir GOFLAGS=-trimpath go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
fi
printf '%s\n' "$bin_dir/helm"
