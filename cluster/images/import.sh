#!/usr/bin/env bash
# Imports image archives (docker-archive tars as written by `docker save` or mkimage.py, or OCI
# archives) into the local cluster's containerd, where the kubelet finds them. Pods then use
# the image's name with imagePullPolicy Never or IfNotPresent; nothing is pulled.
#   bash cluster/images/import.sh FILE.tar [FILE.tar ...]
# An archive already imported (same content, and its tags still present) is skipped.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../lib/common.sh"

(($# > 0)) || die "usage: $0 FILE.tar [FILE.tar ...]"
[[ -S "$CONTAINERD_SOCK" ]] || die "the cluster's containerd is not running (no $CONTAINERD_SOCK): run make cluster first"
stamps="$RUN_DIR/imported"
mkdir -p "$stamps"

# The tags a docker-archive names in its manifest.json (none for other archives).
archive_tags() {
  python3 - "$1" <<'PY'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    try:
        member = tar.extractfile("manifest.json")
    except KeyError:
        member = None
    if member is not None:
        for entry in json.load(member):
            for tag in entry.get("RepoTags") or []:
                print(tag)
PY
}

present=$(ctr_k8s images ls -q)
for file in "$@"; do
  [[ -f "$file" ]] || die "no such image archive: $file"
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  listed=$(archive_tags "$file")
  tags=()
  [[ -z $listed ]] || mapfile -t tags <<<"$listed"
  all_present=1
  for t in "${tags[@]}"; do
    # containerd names docker.io images in full; the short name must match that form too.
    grep -qxF -e "$t" -e "docker.io/$t" -e "docker.io/library/$t" <<<"$present" || all_present=0
  done
  if [[ -e "$stamps/$sum" && ${#tags[@]} -gt 0 && $all_present == 1 ]]; then
    log "image ${tags[*]} already imported"
    continue
  fi
  log "importing $file${tags[*]:+ (${tags[*]})}"
  ctr_k8s images import "$file" >/dev/null
  touch "$stamps/$sum"
done
