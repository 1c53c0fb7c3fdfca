# shellcheck shell=bash # a library (sourced by image/base.sh and kind/node-image.sh): no shebang
# The Debian root filesystems of the images built from Debian's packages, for machines without
# a registry: the local Python base image (image/base.sh) and the kind node image
# (kind/node-image.sh). Sourced, never run; building needs root (debootstrap, chroot, mount).
#
#   ensure_rootfs [OPTIONS] TAR SUITE [PACKAGE...]
#     Makes sure the tarball TAR holds a rootfs of Debian SUITE: when it is missing (or FORCE=1),
#     a debootstrap --variant=minbase of SUITE with PACKAGE... from the machine's Debian mirror,
#     SUITE-updates and SUITE-security applied, then trimmed: no apt lists or caches, docs, man
#     and info pages, locales, logs, temporary files, /dev, machine-id, hostname, and an empty
#     resolv.conf. Written next to TAR first, then renamed: an interrupted build leaves no TAR.
#     --slim-installs   for a base that gets more packages installed on top: dpkg leaves out
#                       the docs, man and info pages, locales and lintian files of those too,
#                       apt installs no recommends; the trim keeps the copyright files,
#                       locale.alias and the folders of /var/log, and also removes the lintian
#                       files and dpkg's and debconf's *-old backups
#     --check FUNCTION  called with the rootfs folder once the upgrade is applied, before the
#                       trim (e.g. to check what got in; it stops the build by dying)
#     --log FUNCTION, --die FUNCTION   the caller's logging (defaults: ilog, idie of image/lib.sh;
#                       the die function must not return)
#   rootfs_key SUITE RECIPE [PACKAGE...]
#     Twelve hex digits naming what goes into a rootfs, for its TAR's name (the cache's key).
#
# The cached tarball is reused as it is: a caller bumps its recipe (a part of TAR's name) when it
# changes what goes in, and a change here that does bumps both (BASE_RECIPE in image/lib.sh,
# KIND_ROOTFS_RECIPE in kind/lib.sh).

rootfs_key() { printf '%s\n' "$@" | sha256sum | cut -c1-12; }

# The machine's Debian mirror, from its apt sources (deb.debian.org when none is named).
debian_mirror() {
  local uri
  uri=$(awk '$1 == "URIs:" {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}

ensure_rootfs() {
  local slim=0 check='' log=ilog die=idie
  while (($#)); do
    case $1 in
      --slim-installs) slim=1 ;;
      --check) check=$2; shift ;;
      --log) log=$2; shift ;;
      --die) die=$2; shift ;;
      -*) "$die" "ensure_rootfs: unknown option $1" ;;
      *) break ;;
    esac
    shift
  done
  (($# >= 2)) || "$die" "usage: ensure_rootfs [OPTIONS] TAR SUITE [PACKAGE...]"
  local tar=$1 suite=$2
  shift 2
  if [[ ${FORCE:-0} != 1 && -s $tar ]]; then
    "$log" "using the cached rootfs $tar"
    return 0
  fi

  command -v debootstrap >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2; } ||
    "$die" "debootstrap is not installed and could not be"
  local mirror work rootfs packages include=() started=$SECONDS
  mirror=$(debian_mirror)
  work=$(mktemp -d "$(dirname "$tar")/.rootfs-XXXXXX")
  rootfs=$work/rootfs
  # shellcheck disable=SC2064 # the folders are known now; the function's locals are gone at exit
  trap "umount -R $(printf '%q' "$rootfs/proc") 2>/dev/null; rm -rf $(printf '%q' "$work")" EXIT
  packages=$(IFS=,; printf '%s' "$*")
  [[ -z $packages ]] || include=("--include=$packages")
  "$log" "debootstrap $suite (minbase${packages:+ + $packages}) from $mirror: a few minutes"
  debootstrap --variant=minbase "${include[@]}" --components=main \
    "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; "$die" "debootstrap failed"; }

  "$log" "applying $suite-updates and $suite-security"
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF
  if ((slim)); then
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
  fi
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  mount -t proc proc "$rootfs/proc"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get -q update && apt-get -qy upgrade && apt-get -qy clean' >>"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; "$die" "upgrading the rootfs failed"; }
  umount "$rootfs/proc"
  [[ -z $check ]] || "$check" "$rootfs"

  "$log" "trimming docs, man pages, locales, apt lists and caches, logs"
  rm -rf "${rootfs:?}"/var/lib/apt/lists/* "${rootfs:?}"/var/cache/apt/* \
    "${rootfs:?}"/usr/share/man/* "${rootfs:?}"/usr/share/info/* \
    "${rootfs:?}"/tmp/* "${rootfs:?}"/var/tmp/* "${rootfs:?}"/dev/* \
    "${rootfs:?}"/etc/machine-id "${rootfs:?}"/etc/hostname
  if ((slim)); then
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "${rootfs:?}"/usr/share/lintian "${rootfs:?}"/var/cache/debconf/*-old "${rootfs:?}"/var/lib/dpkg/*-old
    find "$rootfs/var/log" -type f -delete
  else
    rm -rf "${rootfs:?}"/usr/share/doc/* "${rootfs:?}"/usr/share/locale/* "${rootfs:?}"/var/log/*
  fi
  : >"$rootfs/etc/resolv.conf"

  tar --numeric-owner --sort=name -C "$rootfs" -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$work"
  trap - EXIT
  "$log" "rootfs built in $((SECONDS - started)) s: $tar ($(du -m "$tar" | cut -f1) MB)"
}
