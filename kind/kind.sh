#!/usr/bin/env bash
# Runs the project's kind ($KIND_VERSION, built into the cache on first use) against the engine
# the kind tooling uses (the project's own in offline mode), e.g.
#   bash kind/kind.sh get nodes --name podtrail
#   bash kind/kind.sh export logs /tmp/kind-logs --name podtrail
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

select_kind_mode
ensure_kind
exec "$KIND" "$@"
