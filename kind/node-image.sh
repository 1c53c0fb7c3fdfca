#!/usr/bin/env bash
# Assembles the kind node image for machines without a registry (`kind build node-image` needs
# kindest/base, kindnetd and local-path images from one), in the project's own Docker engine:
# 1. rootfs: debootstrap of Debian $KIND_SUITE with systemd, dbus, containerd, runc, the CNI
#    plugins, iptables, nftables, conntrack, iproute2, ... (image/rootfs.sh, shared with
#    image/base.sh; cached as a tar keyed by KIND_ROOTFS_RECIPE and the packages: downloaded
#    once);
# 2. kind's base-image files, read from the kind Go module in the module cache (entrypoint,
#    helper scripts, systemd units, crictl and containerd config; the containerd config with
#    restrict_oom_score_adj = true, as this machine's containers lack CAP_SYS_RESOURCE, and the
#    locally built pause image as sandbox image), the locally built kubeadm, kubelet, kubectl
#    and crictl, /kind/version, and the stand-in pod network (kind/node/podtrail-cni);
# 3. `docker import`, then the component images (kind/component-images.sh) imported into the
#    node's containerd (a container of the image runs containerd; `ctr images import`), and
#    `docker commit`.
# The image is tagged $KIND_NODE_REPO:$K8S_VERSION-<key>, the key covering every input; it is
# also saved under $KIND_CACHE so that an engine whose data root was wiped loads it again
# instead of rebuilding. Prints the image's name. FORCE=1 rebuilds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../image/rootfs.sh
source "$REPO_ROOT/image/rootfs.sh"

[[ $(id -u) == 0 ]] || kdie "assembling the node image needs root (debootstrap, chroot)"
KIND_MODE=offline
select_kind_mode
local_engine_answers || bash "$REPO_ROOT/image/engine-up.sh"
mkdir -p "$KIND_CACHE"

PACKAGES=(
  systemd dbus
  containerd runc containernetworking-plugins
  iptables nftables conntrack iproute2 ethtool kmod socat
  util-linux mount procps libseccomp2 pigz jq bash
)
ROOTFS_TAR=$KIND_CACHE/rootfs-$KIND_SUITE-$KIND_ROOTFS_RECIPE-$(rootfs_key "$KIND_SUITE" "$KIND_ROOTFS_RECIPE" "${PACKAGES[@]}").tar

# What the node image is made of: the key of its tag.
mapfile -t COMPONENT_TARS < <(bash "$KIND_TOOLING_DIR/component-images.sh")
((${#COMPONENT_TARS[@]} == 7)) || kdie "expected 7 component images, got ${#COMPONENT_TARS[@]}"
KIND_MODULE=$(kind_module_dir)
BASE_FILES=$KIND_MODULE/images/base/files
NODE_KEY=$(
  {
    echo "$KIND_VERSION $K8S_VERSION $(basename "$ROOTFS_TAR")"
    cat "$KIND_TOOLING_DIR/node-image.sh" "$KIND_TOOLING_DIR"/node/* | sha256sum
    printf '%s\n' "${COMPONENT_TARS[@]##*/}"
    stat -L -c '%n %s %Y' "$K8S_BIN_DIR/kubeadm" "$K8S_BIN_DIR/kubelet" "$K8S_BIN_DIR/kubectl" "$CRICTL_BIN_DIR/crictl"
    (cd "$BASE_FILES" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-12
)
NODE_IMAGE=$KIND_NODE_REPO:$K8S_VERSION-$NODE_KEY
NODE_TAR=$KIND_CACHE/node-$K8S_VERSION-$NODE_KEY.tar

if [[ ${FORCE:-0} != 1 ]] && "${DOCKER[@]}" image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
  klog "node image $NODE_IMAGE is present"
  printf '%s\n' "$NODE_IMAGE"
  exit 0
fi
if [[ ${FORCE:-0} != 1 && -s $NODE_TAR ]]; then
  klog "loading the node image from $NODE_TAR"
  "${DOCKER[@]}" load -i "$NODE_TAR" >&2
  printf '%s\n' "$NODE_IMAGE"
  exit 0
fi

started=$SECONDS
ensure_rootfs --log klog --die kdie "$ROOTFS_TAR" "$KIND_SUITE" "${PACKAGES[@]}"

work=$(mktemp -d "$KIND_CACHE/.node-XXXXXX")
root=$work/rootfs
build_container=podtrail-kind-build-$NODE_KEY
cleanup() {
  "${DOCKER[@]}" rm -f -v "$build_container" >/dev/null 2>&1 || true
  "${DOCKER[@]}" rmi "$KIND_NODE_REPO:build-$NODE_KEY" >/dev/null 2>&1 || true
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"${DOCKER[@]}" rm -f -v "$build_container" >/dev/null 2>&1 || true

klog "assembling the node image for Kubernetes $K8S_VERSION (kind $KIND_VERSION base files from $KIND_MODULE)"
mkdir -p "$root"
tar -xf "$ROOTFS_TAR" -C "$root"

# kind's base-image files, with the modes its Dockerfile gives them.
install -d -m 0755 "$root/kind" "$root/kind/bin" "$root/LICENSES" "$root/etc/containerd" \
  "$root/etc/default" "$root/etc/sysctl.d" "$root/etc/systemd/system/kubelet.service.d"
install -m 0755 "$BASE_FILES"/usr/local/bin/* "$root/usr/local/bin/"
install -m 0755 "$BASE_FILES"/kind/bin/* "$root/kind/bin/"
install -m 0644 "$BASE_FILES"/kind/README.txt "$root/kind/" 2>/dev/null || true
install -m 0644 "$BASE_FILES"/LICENSES/* "$root/LICENSES/"
install -m 0644 "$BASE_FILES"/etc/crictl.yaml "$root/etc/"
install -m 0644 "$BASE_FILES"/etc/default/* "$root/etc/default/"
install -m 0644 "$BASE_FILES"/etc/sysctl.d/* "$root/etc/sysctl.d/"
install -m 0644 "$BASE_FILES"/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
for unit in "$BASE_FILES"/etc/systemd/system/*; do
  [[ -f $unit ]] || continue
  # No fuse-overlayfs snapshotter here (not rootless).
  [[ $(basename "$unit") == containerd-fuse-overlayfs.service ]] && continue
  install -m 0644 "$unit" "$root/etc/systemd/system/"
done

PAUSE_IMAGE_NAME=$("$K8S_BIN_DIR/kubeadm" config images list --kubernetes-version "$K8S_VERSION" | grep '/pause:')
# containerd's config: kind's, with the sandbox image kubeadm names (built here) and the OOM score
# restriction (CAP_SYS_RESOURCE is not in this machine's bounding set).
sed -e 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' \
  -e "s#sandbox_image = \".*\"#sandbox_image = \"$PAUSE_IMAGE_NAME\"#" \
  "$BASE_FILES/etc/containerd/config.toml" >"$root/etc/containerd/config.toml"
grep -q 'restrict_oom_score_adj = true' "$root/etc/containerd/config.toml" || kdie "could not set restrict_oom_score_adj"
grep -q "sandbox_image = \"$PAUSE_IMAGE_NAME\"" "$root/etc/containerd/config.toml" || kdie "could not set the sandbox image"
# kind's units expect its own builds in /usr/local; Debian's are in /usr.
for bin in containerd containerd-shim-runc-v2 ctr; do ln -sf "/usr/bin/$bin" "$root/usr/local/bin/$bin"; done
ln -sf /usr/sbin/runc "$root/usr/local/sbin/runc"
# The CNI plugins where containerd looks for them.
rm -rf "${root:?}/opt/cni/bin"
mkdir -p "$root/opt/cni"
ln -s /usr/lib/cni "$root/opt/cni/bin"

# Kubernetes.
install -m 0755 "$K8S_BIN_DIR/kubeadm" "$K8S_BIN_DIR/kubelet" "$K8S_BIN_DIR/kubectl" "$root/usr/bin/"
install -m 0755 "$CRICTL_BIN_DIR/crictl" "$root/usr/local/bin/"
printf '%s' "$K8S_VERSION" >"$root/kind/version"
mkdir -p "$root/etc/kubernetes/manifests"

# The stand-in pod network.
install -m 0755 "$KIND_TOOLING_DIR/node/podtrail-cni" "$root/usr/local/bin/podtrail-cni"
install -m 0644 "$KIND_TOOLING_DIR/node/podtrail-cni.service" "$root/etc/systemd/system/"

# systemd in a container, as kind's Dockerfile sets it up; plus: no sysctl.d file of the
# distribution (a privileged node would apply its kernel-wide settings, e.g. kernel.pid_max,
# to the host).
rm -f "${root:?}"/usr/lib/sysctl.d/*.conf "${root:?}"/etc/sysctl.d/99-sysctl.conf
ln -sf /usr/lib/systemd/systemd "$root/sbin/init"
echo "ReadKMsg=no" >>"$root/etc/systemd/journald.conf"
find "$root/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "${root:?}"/lib/systemd/system/multi-user.target.wants/* "${root:?}"/etc/systemd/system/*.wants/* \
  "${root:?}"/lib/systemd/system/local-fs.target.wants/* "${root:?}"/lib/systemd/system/sockets.target.wants/*udev* \
  "${root:?}"/lib/systemd/system/sockets.target.wants/*initctl* "${root:?}"/lib/systemd/system/basic.target.wants/*
mount -t proc proc "$root/proc"
chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -euc '
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service podtrail-cni.service >/dev/null 2>&1
  systemctl mask systemd-binfmt.service >/dev/null 2>&1
  # The runtime spec every container starts from: a hook mounting the node product files in,
  # no rlimits (as kind does).
  ctr oci spec >/tmp/spec.json
  jq ".hooks.createContainer += [{\"path\": \"/kind/bin/mount-product-files.sh\"}] | del(.process.rlimits)" \
    /tmp/spec.json >/etc/containerd/cri-base.json
  rm -f /tmp/spec.json
  update-alternatives --set iptables /usr/sbin/iptables-nft >/dev/null
  update-alternatives --set ip6tables /usr/sbin/ip6tables-nft >/dev/null
'
umount "$root/proc"
for unit in kubelet containerd undo-mount-hacks podtrail-cni; do
  [[ -L $root/etc/systemd/system/multi-user.target.wants/$unit.service ]] || kdie "$unit.service is not enabled"
done
rm -rf "${root:?}"/dev/* "${root:?}"/tmp/* "${root:?}"/var/log/*

klog "importing the node filesystem ($(du -sm "$root" | cut -f1) MB)"
tar --numeric-owner -C "$root" -cf - . |
  "${DOCKER[@]}" import \
    --change 'ENV container=docker' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    - "$KIND_NODE_REPO:build-$NODE_KEY" >/dev/null
rm -rf "$root"

klog "preloading ${#COMPONENT_TARS[@]} component images into the node's containerd"
"${DOCKER[@]}" run -d --name "$build_container" --privileged --network none \
  --tmpfs /run --tmpfs /tmp --entrypoint sleep "$KIND_NODE_REPO:build-$NODE_KEY" infinity >/dev/null
"${DOCKER[@]}" exec "$build_container" sh -c 'containerd >/tmp/containerd.log 2>&1 &'
for _ in $(seq 1 60); do
  "${DOCKER[@]}" exec "$build_container" ctr version >/dev/null 2>&1 && break
  sleep 0.5
done
"${DOCKER[@]}" exec "$build_container" ctr version >/dev/null 2>&1 ||
  { "${DOCKER[@]}" exec "$build_container" tail -n 20 /tmp/containerd.log >&2; kdie "containerd did not start in the build container"; }
for tar in "${COMPONENT_TARS[@]}"; do
  "${DOCKER[@]}" exec -i "$build_container" ctr -n k8s.io images import --no-unpack --all-platforms - <"$tar" >/dev/null ||
    kdie "importing $tar failed"
done
"${DOCKER[@]}" exec "$build_container" ctr -n k8s.io images ls -q | grep -v '^sha256:' >&2
count=$("${DOCKER[@]}" exec "$build_container" ctr -n k8s.io images ls -q | grep -c '^registry.k8s.io/' || true)
((count == ${#COMPONENT_TARS[@]})) || kdie "the node's containerd holds $count of ${#COMPONENT_TARS[@]} images"
# shellcheck disable=SC2016 # expanded in the container
"${DOCKER[@]}" exec "$build_container" sh -c 'kill $(pidof containerd); while pidof containerd >/dev/null; do sleep 0.2; done'

"${DOCKER[@]}" commit "$build_container" "$KIND_NODE_REPO:build-$NODE_KEY" >/dev/null
# What `docker commit` cannot set (STOPSIGNAL: systemd stops on SIGRTMIN+3, not on TERM) and
# the command the build container ran, through a build step that adds no layer.
printf '%s\n' "FROM $KIND_NODE_REPO:build-$NODE_KEY" \
  'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  'CMD []' \
  'STOPSIGNAL SIGRTMIN+3' \
  "LABEL org.opencontainers.image.title=podtrail-kind-node io.podtrail.kind.version=$KIND_VERSION io.podtrail.kubernetes.version=$K8S_VERSION" |
  DOCKER_BUILDKIT=0 "${DOCKER[@]}" build --quiet --tag "$NODE_IMAGE" - >/dev/null
cleanup
trap - EXIT

klog "saving the node image to $NODE_TAR"
rm -f "$KIND_CACHE"/node-"$K8S_VERSION"-*.tar
"${DOCKER[@]}" save -o "$NODE_TAR.tmp" "$NODE_IMAGE"
mv "$NODE_TAR.tmp" "$NODE_TAR"
# Older builds of the node image.
"${DOCKER[@]}" images --format '{{.Repository}}:{{.Tag}}' "$KIND_NODE_REPO" | grep -vx "$NODE_IMAGE" |
  xargs -r "${DOCKER[@]}" rmi >/dev/null 2>&1 || true
size=$("${DOCKER[@]}" image inspect --format '{{.Size}}' "$NODE_IMAGE")
klog "built $NODE_IMAGE in $((SECONDS - started)) s ($((size / 1000 / 1000)) MB)"
printf '%s\n' "$NODE_IMAGE"
