#!/usr/bin/env bash
# Prints the directory holding otelcol-podtrail, an OpenTelemetry Collector with only what the
# tests need, building it from the collector's Go modules into the version-keyed cache on first
# use: $CACHE_DIR/bin/otelcol-$OTELCOL_VERSION/.
#   bash image/otelcol.sh               -> /var/cache/podtrail/bin/otelcol-v0.161.0
#   "$(bash image/otelcol.sh)/otelcol-podtrail" --config collector.yaml
# Components: receiver otlp (gRPC and HTTP), processor batch, exporters file (contrib; writes
# OTLP JSON, one document a line) and debug; config sources file: and env:.
# OTELCOL_VERSION is the contrib and core v0.x module version; OTELCOL_CORE_VERSION the core's
# v1.x modules of the same release (contrib v0.161.0 requires core v1.67.0). The Go main and
# go.mod below are written to a temporary directory at build time; `go mod tidy` completes the
# module graph from the pinned requirements. Changing the components here needs the cached
# directory removed (or a version bump) to take effect.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OTELCOL_VERSION=${OTELCOL_VERSION:-v0.161.0}
OTELCOL_CORE_VERSION=${OTELCOL_CORE_VERSION:-v1.67.0}
bin_dir=$CACHE_DIR/bin/otelcol-$OTELCOL_VERSION
binary=$bin_dir/otelcol-podtrail

write_go_mod() {
  local core=go.opentelemetry.io/collector
  local contrib=github.com/open-telemetry/opentelemetry-collector-contrib
  cat <<EOF
module podtrail.local/otelcol

go 1.26.0

require (
	$contrib/exporter/fileexporter $OTELCOL_VERSION
	$core/component $OTELCOL_CORE_VERSION
	$core/confmap $OTELCOL_CORE_VERSION
	$core/confmap/provider/envprovider $OTELCOL_CORE_VERSION
	$core/confmap/provider/fileprovider $OTELCOL_CORE_VERSION
	$core/exporter/debugexporter $OTELCOL_VERSION
	$core/otelcol $OTELCOL_VERSION
	$core/processor/batchprocessor $OTELCOL_VERSION
	$core/receiver/otlpreceiver $OTELCOL_VERSION
	$core/service $OTELCOL_VERSION
)
EOF
}

write_main_go() {
  cat <<'EOF'
// The OpenTelemetry Collector of podtrail's tests: OTLP in, a file (or the log) out.
package main

import (
	"log"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/exporter/debugexporter"
	"go.opentelemetry.io/collector/otelcol"
	"go.opentelemetry.io/collector/processor/batchprocessor"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/service/telemetry/otelconftelemetry"
)

// Set at build time (-X main.version=...): the components' module version.
var version = "dev"

const contrib = "github.com/open-telemetry/opentelemetry-collector-contrib"

func components() (otelcol.Factories, error) {
	var err error
	factories := otelcol.Factories{Telemetry: otelconftelemetry.NewFactory()}
	if factories.Receivers, err = otelcol.MakeFactoryMap(otlpreceiver.NewFactory()); err != nil {
		return otelcol.Factories{}, err
	}
	if factories.Processors, err = otelcol.MakeFactoryMap(batchprocessor.NewFactory()); err != nil {
		return otelcol.Factories{}, err
	}
	factories.Exporters, err = otelcol.MakeFactoryMap(fileexporter.NewFactory(), debugexporter.NewFactory())
	if err != nil {
		return otelcol.Factories{}, err
	}
	factories.ReceiverModules = map[component.Type]string{
		otlpreceiver.NewFactory().Type(): "go.opentelemetry.io/collector/receiver/otlpreceiver " + version,
	}
	factories.ProcessorModules = map[component.Type]string{
		batchprocessor.NewFactory().Type(): "go.opentelemetry.io/collector/processor/batchprocessor " + version,
	}
	factories.ExporterModules = map[component.Type]string{
		fileexporter.NewFactory().Type():  contrib + "/exporter/fileexporter " + version,
		debugexporter.NewFactory().Type(): "go.opentelemetry.io/collector/exporter/debugexporter " + version,
	}
	return factories, nil
}

func main() {
	settings := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{
			Command:     "otelcol-podtrail",
			Description: "OpenTelemetry Collector for podtrail's tests",
			Version:     version,
		},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{
					fileprovider.NewFactory(),
					envprovider.NewFactory(),
				},
			},
		},
	}
	if err := otelcol.NewCommand(settings).Execute(); err != nil {
		log.Fatal(err)
	}
}
EOF
}

build() {
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/otelcol-build.XXXXXX")
  # shellcheck disable=SC2064 # expanded now: the directory of this build
  trap "rm -rf '$work'" EXIT
  write_go_mod >"$work/go.mod"
  write_main_go >"$work/main.go"
  ilog "building otelcol-podtrail $OTELCOL_VERSION from the collector's Go modules (minutes)"
  (
    cd "$work"
    export GOFLAGS=-trimpath
    go mod tidy >&2
    nice -n 10 go build -ldflags "-X main.version=$OTELCOL_VERSION" \
      -o "$binary.partial" . >&2
  )
  mv -f "$binary.partial" "$binary"
}

if [[ ! -x $binary ]]; then
  command -v go >/dev/null 2>&1 || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null 2>&1 || idie "no Go toolchain to build the collector with"
  mkdir -p "$bin_dir"
  # One build at a time (test sessions may start together); the winner's binary serves all.
  exec {lock}>"$bin_dir/.build.lock"
  flock "$lock"
  [[ -x $binary ]] || build
  exec {lock}>&-
fi
printf '%s\n' "$bin_dir"
