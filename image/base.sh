#!/usr/bin/env bash
# Builds the local base image podtrail.local/python-base:bookworm from Debian's packages, for a
# machine that has no container registry to pull python:3.11-slim-bookworm from:
# a debootstrap minbase rootfs of bookworm with python3 (3.11) and its security updates, no
# ca-certificates (the operator trusts only its ServiceAccount's CA), docs/man/locales and apt
# lists stripped, imported into the local engine with `docker import`.
# Skipped when the image is there; the rootfs tarball is cached in
# $CACHE_DIR/images/ (keyed by suite and recipe), so a wiped data root re-imports without
# downloading. FORCE=1 rebuilds both.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $(id -u) == 0 ]] || idie "debootstrap needs root"
IMAGE_ENGINE=local select_engine
local_engine_answers || bash "$IMAGE_TOOLING_DIR/engine-up.sh"

FORCE=${FORCE:-0}
if [[ $FORCE != 1 ]] && "${DOCKER[@]}" image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
  ilog "$LOCAL_BASE_IMAGE is present"
  exit 0
fi

CACHED_TAR=$CACHE_DIR/images/python-base-$BASE_SUITE-$BASE_RECIPE.tar
mkdir -p "$CACHE_DIR/images"

debian_mirror() {
  local uri
  uri=$(awk '$1 == "URIs:" {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}

build_rootfs() {
  command -v debootstrap >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2; }
  local mirror work rootfs
  mirror=$(debian_mirror)
  work=$(mktemp -d "$CACHE_DIR/images/.base-XXXXXX")
  rootfs=$work/rootfs
  # shellcheck disable=SC2064
  trap "umount -R '$rootfs/proc' 2>/dev/null; rm -rf '$work'" EXIT

  ilog "debootstrap $BASE_SUITE (minbase + python3) from $mirror"
  debootstrap --variant=minbase --include=python3 --components=main \
    "$BASE_SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; idie "debootstrap failed"; }

  ilog "applying $BASE_SUITE-updates and $BASE_SUITE-security"
  local security=${mirror%/debian}/debian-security
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $BASE_SUITE main
deb $mirror $BASE_SUITE-updates main
deb $security $BASE_SUITE-security main
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
# Images carry no documentation: keep only the copyright files.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$rootfs/etc/apt/apt.conf.d/01-slim"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get -q update && apt-get -qy upgrade && apt-get -qy clean' >>"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; idie "upgrading the rootfs failed"; }
  umount "$rootfs/proc"

  if chroot "$rootfs" dpkg-query -W -f='${Status}' ca-certificates 2>/dev/null | grep -q 'ok installed'; then
    idie "ca-certificates got into the base rootfs"
  fi
  local version
  version=$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [[ $version == 3.11 ]] || idie "the base has Python $version, not 3.11"
  chroot "$rootfs" python3 -c 'import venv' || idie "the base's Python has no venv module"

  ilog "stripping docs, man pages, locales, apt lists, logs"
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
    "$rootfs"/var/lib/dpkg/*-old "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/dev/* \
    "$rootfs"/etc/machine-id "$rootfs"/etc/hostname
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  find "$rootfs/var/log" -type f -delete
  : >"$rootfs/etc/resolv.conf"

  tar --numeric-owner --sort=name -C "$rootfs" -cf "$CACHED_TAR.tmp" .
  mv "$CACHED_TAR.tmp" "$CACHED_TAR"
  rm -rf "$work"
  trap - EXIT
}

if [[ $FORCE == 1 || ! -s $CACHED_TAR ]]; then
  build_rootfs
else
  ilog "using the cached rootfs $CACHED_TAR"
fi

ilog "importing $LOCAL_BASE_IMAGE"
"${DOCKER[@]}" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change "LABEL org.opencontainers.image.title=python-base org.opencontainers.image.description=\"Debian $BASE_SUITE minbase with python3, built from Debian's packages\"" \
  --message "debootstrap $BASE_SUITE minbase + python3 ($BASE_RECIPE)" \
  "$CACHED_TAR" "$LOCAL_BASE_IMAGE" >/dev/null
"${DOCKER[@]}" image ls "$LOCAL_BASE_IMAGE" >&2
