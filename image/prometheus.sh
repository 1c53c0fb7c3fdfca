#!/usr/bin/env bash
# Prints the directory holding prometheus and promtool (the alert rules' checker; monitoring/),
# building both from the Prometheus Go module into the version-keyed cache on first use:
# $CACHE_DIR/bin/prometheus-$VERSION/. Prometheus 3.x is published to the Go module proxy as
# v0.3xx.y (3.16.0 -> v0.316.0); PROMETHEUS_VERSION is the module version.
#   bash image/prometheus.sh            -> /var/cache/podtrail/bin/prometheus-v0.316.0
#   "$(bash image/prometheus.sh)/promtool" check rules monitoring/rules.yaml
# Built without the service-discovery plugins (tag remove_all_sd: the tests scrape static
# targets), which halves the build; the web UI's assets are not embedded (the HTTP API, which
# the tests use, is complete without them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
bin_dir=$CACHE_DIR/bin/prometheus-$PROMETHEUS_VERSION
if [[ ! -x $bin_dir/prometheus || ! -x $bin_dir/promtool ]]; then
  command -v go >/dev/null 2>&1 || idie "no Go toolchain to build prometheus with"
  mkdir -p "$bin_dir"
  ilog "building prometheus and promtool $PROMETHEUS_VERSION from their Go module (minutes)"
  module=github.com/prometheus/prometheus
  GOBIN=$bin_dir GOFLAGS=-trimpath go install -tags remove_all_sd \
    "$module/cmd/prometheus@$PROMETHEUS_VERSION" "$module/cmd/promtool@$PROMETHEUS_VERSION" >&2
fi
printf '%s\n' "$bin_dir"
