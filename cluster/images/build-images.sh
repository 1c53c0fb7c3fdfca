#!/usr/bin/env bash
# Builds the cluster's own images as docker-archive tars into the image cache (outside the
# repository), without any registry:
#   podtrail.local/pause:1    the pod sandbox: pause.c, compiled static
#   podtrail.local/testbox:1  Debian's busybox-static with every applet linked (sh, sleep,
#                             httpd, nc, nslookup, ...): the image the cluster's tests run
# A tar is rebuilt only when its inputs change (the key is part of its file name).
# Prints the paths of the tars, one a line.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../lib/common.sh"

mkdir -p "$IMAGE_CACHE_DIR"

# Removes the tars of earlier builds of the same image.
drop_stale() {
  local keep=$1 prefix=$2 f
  for f in "$IMAGE_CACHE_DIR/$prefix"-*.tar; do
    [[ -e "$f" && "$f" != "$keep" ]] && rm -f "$f"
  done
  return 0
}

build_pause() {
  local key out work
  key=$(cat "$HERE/pause.c" "$HERE/mkimage.py" <(gcc --version | head -1) | sha256sum | cut -c1-16)
  out="$IMAGE_CACHE_DIR/pause-1-$key.tar"
  if [[ ! -s "$out" ]]; then
    work=$(mktemp -d)
    mkdir -p "$work/rootfs"
    gcc -static -Os -Wall -o "$work/rootfs/pause" "$HERE/pause.c"
    strip "$work/rootfs/pause"
    python3 "$HERE/mkimage.py" --rootfs "$work/rootfs" --tag "$PAUSE_IMAGE" --out "$out" \
      --entrypoint '["/pause"]' >/dev/null
    rm -rf "$work"
    log "built image $PAUSE_IMAGE -> $out"
  fi
  drop_stale "$out" pause-1
  echo "$out"
}

build_testbox() {
  local key out work busybox applet
  busybox=$(command -v busybox) || die "busybox (Debian's busybox-static) is not installed"
  busybox=$(readlink -f "$busybox")
  key=$(cat "$busybox" "$HERE/mkimage.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
  out="$IMAGE_CACHE_DIR/testbox-1-$key.tar"
  if [[ ! -s "$out" ]]; then
    work=$(mktemp -d)
    local r="$work/rootfs"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,root,var/www,home}
    install -d -m 1777 "$r/tmp"
    install -m 0755 "$busybox" "$r/bin/busybox"
    while read -r applet; do
      [[ "$applet" == bin/busybox ]] && continue
      mkdir -p "$r/$(dirname "$applet")"
      ln -sf /bin/busybox "$r/$applet"
    done < <("$r/bin/busybox" --list-full)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    printf 'testbox\n' >"$r/var/www/index.html"
    python3 "$HERE/mkimage.py" --rootfs "$r" --tag "$TESTBOX_IMAGE" --out "$out" \
      --cmd '["sh"]' >/dev/null
    rm -rf "$work"
    log "built image $TESTBOX_IMAGE -> $out"
  fi
  drop_stale "$out" testbox-1
  echo "$out"
}

build_pause
build_testbox
