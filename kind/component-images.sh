#!/usr/bin/env bash
# Builds the images kubeadm runs the control plane and kube-proxy from, without a registry:
# docker-archive tars of the locally built binaries, tagged exactly as
# `kubeadm config images list --kubernetes-version $K8S_VERSION` names them:
#   kube-apiserver, kube-controller-manager, kube-scheduler   the binary, glibc's loader and libc
#   kube-proxy    also iptables/ip6tables (nf_tables and legacy), nft, conntrack and their libraries
#   etcd          etcd $ETCD_VERSION
#   coredns       CoreDNS $COREDNS_VERSION (tagged as the version kubeadm asks for)
#   pause         the local cluster's pause (cluster/images/pause.c), tagged as kubeadm's
# The binaries are dynamically linked: each image carries the libraries `ldd` names, taken from
# this machine (Debian 12, as the node image). Tars go to $KIND_CACHE/images/, their names keyed
# by their inputs; a second run builds nothing. Prints the tars, one a line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT_DIR=$KIND_CACHE/images
MKIMAGE=$REPO_ROOT/cluster/images/mkimage.py
mkdir -p "$OUT_DIR"

bash "$REPO_ROOT/cluster/lib/build-binaries.sh" >&2
[[ -x $K8S_BIN_DIR/kubeadm ]] || kdie "no kubeadm in $K8S_BIN_DIR"
for tool in iptables nft conntrack; do
  command -v "$tool" >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables nftables conntrack >&2 ||
    kdie "kube-proxy's image needs iptables, nftables and conntrack installed here"
done

mapfile -t WANTED < <("$K8S_BIN_DIR/kubeadm" config images list --kubernetes-version "$K8S_VERSION")
wanted() {  # the full name kubeadm wants for an image: wanted kube-apiserver
  local name
  for name in "${WANTED[@]}"; do
    [[ ${name%:*} == */"$1" ]] && { printf '%s\n' "$name"; return 0; }
  done
  kdie "kubeadm names no $1 image"
}

# The files an executable needs: itself and what ldd resolves, plus the loader.
libs_of() {
  ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
}

# Copies paths into a rootfs at their canonical place (this machine merges /usr, as the images
# do: /lib -> usr/lib, ...); a symlink is copied as a link, and its target too.
put() {
  local root=$1 path real
  shift
  for path in "$@"; do
    [[ -e $path || -L $path ]] || continue
    real=$(readlink -f "$(dirname "$path")")/$(basename "$path")
    [[ -e $root$real || -L $root$real ]] && continue
    mkdir -p "$root$(dirname "$real")"
    cp -a "$real" "$root$real"
    [[ -L $real ]] && put "$root" "$(readlink -f "$real")"
  done
  return 0
}

put_executable() {  # root, executable, destination
  local root=$1 exe=$2 dest=$3 lib
  mkdir -p "$root$(dirname "$dest")"
  install -m 0755 "$exe" "$root$dest"
  while read -r lib; do put "$root" "$lib"; done < <(libs_of "$exe")
}

base_files() {
  local root=$1
  mkdir -p "$root/etc" "$root/root" "$root/usr/lib" "$root/usr/lib64" "$root/usr/bin" "$root/usr/sbin"
  local dir
  for dir in lib lib64 bin sbin; do ln -s "usr/$dir" "$root/$dir"; done
  install -d -m 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
}

# The key of an image: its recipe (this script), its inputs (path, size, modification time)
# and the libraries' packages.
key_of() {
  {
    cat "$KIND_TOOLING_DIR/component-images.sh" "$MKIMAGE" | sha256sum
    stat -L -c '%n %s %Y' "$@"
    dpkg-query -W libc6 iptables nftables conntrack 2>/dev/null
  } | sha256sum | cut -c1-16
}

make_image() {  # short name, full tag, key, builder function, mkimage options...
  local short=$1 tag=$2 key=$3 builder=$4 out work
  shift 4
  out=$OUT_DIR/$short-${tag##*:}-$key.tar
  if [[ ! -s $out ]]; then
    work=$(mktemp -d "$OUT_DIR/.build-XXXXXX")
    mkdir -p "$work/rootfs"
    base_files "$work/rootfs"
    "$builder" "$work/rootfs"
    python3 "$MKIMAGE" --rootfs "$work/rootfs" --tag "$tag" --out "$out.tmp" "$@" >/dev/null
    mv "$out.tmp" "$out"
    rm -rf "$work"
    klog "built $tag -> $out ($(du -m "$out" | cut -f1) MB)"
  fi
  local old
  for old in "$OUT_DIR/$short-${tag##*:}"-*.tar; do
    [[ $old == "$out" ]] || rm -f "$old"
  done
  printf '%s\n' "$out"
}

build_control_plane() { put_executable "$1" "$K8S_BIN_DIR/$COMPONENT" "/usr/local/bin/$COMPONENT"; }
for COMPONENT in kube-apiserver kube-controller-manager kube-scheduler; do
  make_image "$COMPONENT" "$(wanted "$COMPONENT")" "$(key_of "$K8S_BIN_DIR/$COMPONENT")" build_control_plane
done

# kube-proxy: iptables in both variants; the plain names are the nf_tables one, as this
# machine's Docker engine (and so the node's entrypoint) uses.
build_kube_proxy() {
  local root=$1 exe so name
  put_executable "$root" "$K8S_BIN_DIR/kube-proxy" /usr/local/bin/kube-proxy
  for exe in /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi /usr/sbin/nft /usr/sbin/conntrack; do
    [[ -x $exe ]] || continue
    put_executable "$root" "$exe" "$exe"
  done
  for so in /usr/lib/x86_64-linux-gnu/xtables/*.so; do
    put "$root" "$so"
    while read -r name; do put "$root" "$name"; done < <(libs_of "$so")
  done
  for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$root/usr/sbin/$name"
    ln -sf xtables-nft-multi "$root/usr/sbin/${name/tables/tables-nft}"
    [[ -x /usr/sbin/xtables-legacy-multi ]] && ln -sf xtables-legacy-multi "$root/usr/sbin/${name/tables/tables-legacy}"
  done
  put "$root" /etc/protocols /etc/services /etc/ethertypes
  mkdir -p "$root/run" "$root/var/run"
}
proxy_inputs=("$K8S_BIN_DIR/kube-proxy" /usr/sbin/xtables-nft-multi /usr/sbin/nft /usr/sbin/conntrack)
make_image kube-proxy "$(wanted kube-proxy)" "$(key_of "${proxy_inputs[@]}")" build_kube_proxy

build_etcd() {
  put_executable "$1" "$ETCD_BIN_DIR/etcd" /usr/local/bin/etcd
  mkdir -p "$1/var/lib/etcd"
}
make_image etcd "$(wanted etcd)" "$(key_of "$ETCD_BIN_DIR/etcd")" build_etcd

build_coredns() { put_executable "$1" "$COREDNS_BIN_DIR/coredns" /coredns; }
make_image coredns "$(wanted coredns)" "$(key_of "$COREDNS_BIN_DIR/coredns")" build_coredns \
  --entrypoint '["/coredns"]'

# pause: the local cluster's, built by its image script (a static binary).
pause_tar=$(bash "$REPO_ROOT/cluster/images/build-images.sh" | grep '/pause-')
pause_dir=$(mktemp -d)
tar -xf "$pause_tar" -C "$pause_dir"
pause_layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["Layers"][0])' "$pause_dir/manifest.json")
mkdir -p "$pause_dir/rootfs"
tar -xf "$pause_dir/$pause_layer" -C "$pause_dir/rootfs"
build_pause() { cp -a "$pause_dir/rootfs/pause" "$1/pause"; }
make_image pause "$(wanted pause)" "$(key_of "$pause_tar")" build_pause --entrypoint '["/pause"]'
rm -rf "$pause_dir"
