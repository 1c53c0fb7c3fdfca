#!/usr/bin/env bash
# Builds the local base image podtrail.local/python-base:bookworm from Debian's packages, for a
# machine that has no container registry to pull python:3.11-slim-bookworm from:
# a debootstrap minbase rootfs of bookworm with python3 (3.11) and its security updates, no
# ca-certificates (the operator trusts only its ServiceAccount's CA), docs/man/locales and apt
# lists stripped (image/rootfs.sh, shared with kind/node-image.sh), imported into the local
# engine with `docker import`.
# Skipped when the image is there; the rootfs tarball is cached in
# $CACHE_DIR/images/ (keyed by suite and recipe), so a wiped data root re-imports without
# downloading. FORCE=1 rebuilds both.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/rootfs.sh"

[[ $(id -u) == 0 ]] || idie "debootstrap needs root"
IMAGE_ENGINE=local select_engine
local_engine_answers || bash "$IMAGE_TOOLING_DIR/engine-up.sh"

FORCE=${FORCE:-0}
if [[ $FORCE != 1 ]] && "${DOCKER[@]}" image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
  ilog "$LOCAL_BASE_IMAGE is present"
  exit 0
fi

# The rootfs tarball's name predates rootfs_key: suite and recipe only (python3 is part of the
# recipe), so that the tarballs already cached are found.
CACHED_TAR=$CACHE_DIR/images/python-base-$BASE_SUITE-$BASE_RECIPE.tar
mkdir -p "$CACHE_DIR/images"

# What the base must hold: Python 3.11 with venv, and no CA bundle.
check_base_rootfs() {
  local rootfs=$1 version
  # shellcheck disable=SC2016 # a dpkg-query format, not a shell expansion
  if chroot "$rootfs" dpkg-query -W -f='${Status}' ca-certificates 2>/dev/null | grep -q 'ok installed'; then
    idie "ca-certificates got into the base rootfs"
  fi
  version=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [[ $version == 3.11 ]] || idie "the base has Python $version, not 3.11"
  chroot "$rootfs" python3 -c 'import venv' || idie "the base's Python has no venv module"
}

ensure_rootfs --slim-installs --check check_base_rootfs "$CACHED_TAR" "$BASE_SUITE" python3

ilog "importing $LOCAL_BASE_IMAGE"
"${DOCKER[@]}" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change "LABEL org.opencontainers.image.title=python-base org.opencontainers.image.description=\"Debian $BASE_SUITE minbase with python3, built from Debian's packages\"" \
  --message "debootstrap $BASE_SUITE minbase + python3 ($BASE_RECIPE)" \
  "$CACHED_TAR" "$LOCAL_BASE_IMAGE" >/dev/null
"${DOCKER[@]}" image ls "$LOCAL_BASE_IMAGE" >&2
