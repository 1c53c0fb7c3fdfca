#!/usr/bin/env bash
# Prints the path of actionlint (the GitHub Actions workflow linter), building it from its Go
# module into the version-keyed cache on first use: $CACHE_DIR/bin/actionlint-$VERSION/.
#   bash image/actionlint.sh            -> /var/cache/podtrail/bin/actionlint-v1.7.12/actionlint
#   "$(bash image/actionlint.sh)" .github/workflows/*.yaml
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
bin_dir=$CACHE_DIR/bin/actionlint-$ACTIONLINT_VERSION
if [[ ! -x $bin_dir/actionlint ]]; then
  command -v go >/dev/null 2>&1 || idie "no Go toolchain to build actionlint with"
  mkdir -p "$bin_dir"
  ilog "building actionlint $ACTIONLINT_VERSION from its Go module"
  GOBIN=$bin_dir GOFLAGS=-trimpath go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
fi
printf '%s\n' "$bin_dir/actionlint"
