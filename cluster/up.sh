#!/usr/bin/env bash
# Brings up the project's local single-node Kubernetes cluster from upstream parts, as host
# processes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
# kube-proxy and CoreDNS, on a bridge of its own. Idempotent: a running healthy cluster is reused
# (components that died are started again); without one, whatever an earlier run left is cleaned
# up first. The last line printed is `export KUBECONFIG=...`. See docs/cluster.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/lib/common.sh"
source "$HERE/lib/pki.sh"
source "$HERE/lib/teardown.sh"

STARTED_AT=$SECONDS
[[ $EUID -eq 0 ]] || die "cluster/up.sh must run as root (it runs a kubelet and containerd)"

# --- host packages -------------------------------------------------------------------------------
ensure_packages() {
  local pkgs=(containerd runc containernetworking-plugins busybox-static iptables conntrack socat
    openssl curl iproute2 util-linux gcc libc6-dev)
  local missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
  command -v python3 >/dev/null || apt-get install -y -q --no-install-recommends python3 >/dev/null
}

# --- processes -----------------------------------------------------------------------------------
fail_component() {
  local name=$1 why=$2
  printf '%s [cluster] ERROR: %s did not come up: %s\n' "$(date +%H:%M:%S)" "$name" "$why" >&2
  if [[ -s "$LOG_DIR/$name.log" ]]; then
    printf -- '----- last lines of %s -----\n' "$LOG_DIR/$name.log" >&2
    tail -n 25 "$LOG_DIR/$name.log" >&2
    printf -- '-----\n' >&2
  fi
  exit 1
}

# start_component NAME ARGS...: runs the component in a new process session (setsid), its
# output appended to its log.
start_component() {
  local name=$1 bin pid
  shift
  if pid=$(component_pid "$name"); then
    log "$name already running (pid $pid)"
    return 0
  fi
  bin=$(component_bin "$name")
  [[ -x "$bin" ]] || fail_component "$name" "no binary at $bin"
  log "starting $name"
  local logfile="$LOG_DIR/$name.log"
  # Keep one previous log when it grows large (containerd logs every container event).
  if [[ -f "$logfile" ]] && (($(stat -c %s "$logfile") > 64 * 1024 * 1024)); then
    mv -f "$logfile" "$logfile.1"
  fi
  printf '\n===== %s starting %s\n' "$(date -Is)" "$name" >>"$LOG_DIR/$name.log"
  # fd 9 (the lock) is closed: a long-running component must not hold it.
  setsid "$bin" "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$RUN_DIR/$name.pid"
  # The child is ours once it has exec'd the binary; until then /proc shows the forked shell.
  local i
  for ((i = 0; i < 100; i++)); do
    component_pid "$name" >/dev/null && return 0
    [[ -d /proc/$pid ]] || break
    sleep 0.05
  done
  component_pid "$name" >/dev/null || fail_component "$name" "the process exited at once"
}

# wait_for NAME TIMEOUT_S DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local name=$1 timeout=$2 what=$3 deadline
  shift 3
  deadline=$((SECONDS + timeout))
  while ! "$@" >/dev/null 2>&1; do
    component_pid "$name" >/dev/null || fail_component "$name" "the process exited (waiting for: $what)"
    ((SECONDS < deadline)) || fail_component "$name" "no $what after ${timeout} s"
    sleep 0.3
  done
  log "$name: $what"
}

curl_admin() {
  curl -sf --max-time 3 --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" "$@"
}

# write_config FILE: stdin into FILE, only when the content differs (kube-proxy exits when its
# config file is written, and containerd reloads the CNI folder on every change).
write_config() {
  local file=$1 tmp
  tmp=$(mktemp "$file.XXXXXX")
  cat >"$tmp"
  if [[ -f "$file" ]] && cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
  else
    chmod 644 "$tmp"
    mv -f "$tmp" "$file"
  fi
}

# --- host preparation ----------------------------------------------------------------------------
prepare_host() {
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$CONF_DIR" "$BIN_LINK_DIR" "$ETCD_DATA_DIR" "$KUBELET_ROOT" \
    "$CONTAINERD_ROOT" "$CNI_CONF_DIR" "$CNI_IPAM_DIR" "$CONTAINERD_STATE" "$CLUSTER_DIR/pod-logs"
  chmod 700 "$ETCD_DATA_DIR"
  record_host_state
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 \
    net.bridge.bridge-nf-call-ip6tables=1 >/dev/null
  # Volume mounts made by the kubelet must propagate into containers.
  [[ "$(findmnt -rn -o PROPAGATION /)" == shared ]] || mount --make-rshared /

  if ! ip link show "$BRIDGE_NAME" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE_NAME with $NODE_IP/${POD_CIDR#*/}"
    ip link add "$BRIDGE_NAME" type bridge
  fi
  ip addr show dev "$BRIDGE_NAME" | grep -qF " $NODE_IP/${POD_CIDR#*/} " ||
    ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE_NAME"
  ip link set "$BRIDGE_NAME" up
  # Host-side traffic to Service IPs goes to the bridge, never towards the machine's own uplink.
  ip route replace "$SERVICE_CIDR" dev "$BRIDGE_NAME" src "$NODE_IP"

  # Pods talk to each other and to the host; nothing they send is forwarded off the machine.
  if ! iptables -w -S PODTRAIL-FORWARD >/dev/null 2>&1; then
    iptables -w -N PODTRAIL-FORWARD
    iptables -w -A PODTRAIL-FORWARD -i "$BRIDGE_NAME" -o "$BRIDGE_NAME" -j ACCEPT
    iptables -w -A PODTRAIL-FORWARD -i "$BRIDGE_NAME" -m comment --comment "podtrail pods stay on the machine" -j REJECT
  fi
  iptables -w -C FORWARD -j PODTRAIL-FORWARD 2>/dev/null || iptables -w -I FORWARD 1 -j PODTRAIL-FORWARD

  write_config "$CNI_CONF_DIR/10-podtrail.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CNI_NETWORK_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE_NAME",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CNI_IPAM_DIR",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP", "rangeStart": "${NODE_IP%.*}.10"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  ln -sfn "$K8S_BIN_DIR/kubectl" "$BIN_LINK_DIR/kubectl"
  ln -sfn "$CRICTL_BIN_DIR/crictl" "$BIN_LINK_DIR/crictl"
}

# --- components ----------------------------------------------------------------------------------
start_etcd() {
  start_component etcd --name podtrail --data-dir "$ETCD_DATA_DIR" \
    --listen-client-urls "$ETCD_CLIENT_URL" --advertise-client-urls "$ETCD_CLIENT_URL" \
    --listen-peer-urls "$ETCD_PEER_URL" --initial-advertise-peer-urls "$ETCD_PEER_URL" \
    --initial-cluster "podtrail=$ETCD_PEER_URL" \
    --quota-backend-bytes 4294967296 --log-level warn
  wait_for etcd 30 "healthy" sh -c "curl -sf --max-time 2 $ETCD_CLIENT_URL/health | grep -q '\"health\":\"true\"'"
}

start_apiserver() {
  start_component kube-apiserver \
    --bind-address 0.0.0.0 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
    --etcd-servers "$ETCD_CLIENT_URL" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
    --client-ca-file "$PKI_DIR/ca.crt" \
    --tls-cert-file "$PKI_DIR/apiserver.crt" --tls-private-key-file "$PKI_DIR/apiserver.key" \
    --kubelet-client-certificate "$PKI_DIR/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI_DIR/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI_DIR/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI_DIR/sa.pub" \
    --service-account-signing-key-file "$PKI_DIR/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --anonymous-auth=false --profiling=false \
    --endpoint-reconciler-type lease --event-ttl 1h --v 1
  wait_for kube-apiserver 90 "/readyz ok" curl_admin "$APISERVER_URL/readyz"
}

apply_bootstrap_objects() {
  kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podtrail:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: podtrail:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podtrail:coredns
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: podtrail:coredns
EOF
}

start_controllers() {
  start_component kube-controller-manager \
    --kubeconfig "$CONF_DIR/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$CONF_DIR/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$CONF_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --use-service-account-credentials \
    --service-account-private-key-file "$PKI_DIR/sa.key" --root-ca-file "$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file "$PKI_DIR/ca.crt" --cluster-signing-key-file "$PKI_DIR/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" --allocate-node-cidrs=false \
    --controllers '*,bootstrapsigner,tokencleaner' --profiling=false --v 1
  start_component kube-scheduler \
    --kubeconfig "$CONF_DIR/scheduler.kubeconfig" \
    --authentication-kubeconfig "$CONF_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$CONF_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v 1
  wait_for kube-controller-manager 60 "healthy" curl -sfk --max-time 2 https://127.0.0.1:10257/healthz
  wait_for kube-scheduler 60 "healthy" curl -sfk --max-time 2 https://127.0.0.1:10259/healthz
}

start_containerd() {
  write_config "$CONF_DIR/containerd.toml" <<EOF
version = 2
root = "$CONTAINERD_ROOT/root"
state = "$CONTAINERD_STATE"
oom_score = 0

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$CONTAINERD_STATE/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CONTAINERD_ROOT/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    restrict_oom_score_adj = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$CONTAINERD_STATE/runc"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$CONF_DIR/registry"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN_DIR"
      conf_dir = "$CNI_CONF_DIR"
      max_conf_num = 1
EOF
  # No registry is reached from here: every registry host resolves to a loopback port where
  # nothing listens, so a pull of a missing image fails at once and sends nothing off the machine.
  local host
  for host in _default docker.io; do
    mkdir -p "$CONF_DIR/registry/$host"
    printf 'server = "http://127.0.0.1:5999"\n\n[host."http://127.0.0.1:5999"]\n  capabilities = ["pull", "resolve"]\n' |
      write_config "$CONF_DIR/registry/$host/hosts.toml"
  done
  start_component containerd --config "$CONF_DIR/containerd.toml"
  wait_for containerd 30 "serving its socket" ctr --address "$CONTAINERD_SOCK" version
}

import_images() {
  local tars
  mapfile -t tars < <(bash "$HERE/images/build-images.sh")
  bash "$HERE/images/import.sh" "${tars[@]}"
}

start_kubelet() {
  # The pods' resolver: the cluster DNS only (it answers cluster names and refuses the rest).
  printf 'nameserver %s\noptions ndots:5\n' "$DNS_IP" | write_config "$CONF_DIR/resolv.conf"
  write_config "$CONF_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI_DIR/ca.crt
authorization:
  mode: Webhook
tlsCertFile: $PKI_DIR/kubelet-serving.crt
tlsPrivateKeyFile: $PKI_DIR/kubelet-serving.key
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $CONF_DIR/resolv.conf
podLogsDir: $CLUSTER_DIR/pod-logs
registerNode: true
rotateCertificates: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
EOF
  mount --make-rshared / 2>/dev/null || true
  start_component kubelet --config "$CONF_DIR/kubelet.yaml" --kubeconfig "$CONF_DIR/kubelet.kubeconfig" \
    --root-dir "$KUBELET_ROOT" --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v 1
  wait_for kubelet 60 "healthy" curl -sf --max-time 2 http://127.0.0.1:10248/healthz
  wait_for kubelet 90 "node $NODE_NAME Ready" node_ready
}

node_ready() {
  [[ "$(kubectl_admin get node "$NODE_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

start_kube_proxy() {
  write_config "$CONF_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $CONF_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [$NODE_IP/32]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  minSyncPeriod: 0s
  syncPeriod: 30s
EOF
  start_component kube-proxy --config "$CONF_DIR/kube-proxy.yaml" --v 1
  wait_for kube-proxy 60 "healthy" curl -sf --max-time 2 http://127.0.0.1:10256/healthz
}

start_coredns() {
  if [[ ! -x "$(component_bin coredns)" ]]; then
    log "coredns is not built; pods get no cluster DNS"
    return 0
  fi
  write_config "$CONF_DIR/Corefile" <<EOF
$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $DNS_IP
    errors
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $CONF_DIR/coredns.kubeconfig podtrail
        pods insecure
    }
    cache 5
}
.:53 {
    bind $DNS_IP
    acl {
        block
    }
}
EOF
  start_component coredns -conf "$CONF_DIR/Corefile"
  wait_for coredns 30 "answering kubernetes.default.svc.$CLUSTER_DOMAIN" \
    sh -c "busybox nslookup kubernetes.default.svc.$CLUSTER_DOMAIN $DNS_IP | grep -q '$KUBERNETES_SERVICE_IP'"
}

# A busybox pod must reach Running: proof that the node runs containers.
smoke_pod() {
  local name=podtrail-smoke
  wait_for kube-controller-manager 30 "default service account" kubectl_admin get serviceaccount default -n default
  kubectl_admin delete pod "$name" -n default --ignore-not-found --grace-period=0 --force >/dev/null 2>&1 || true
  kubectl_admin apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: default
  labels: {app.kubernetes.io/part-of: podtrail-cluster-check}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: $TESTBOX_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
EOF
  wait_for kubelet 60 "busybox pod $name Running" sh -c \
    "'$K8S_BIN_DIR/kubectl' --kubeconfig '$KUBECONFIG_PATH' get pod $name -n default -o jsonpath='{.status.phase}' | grep -qx Running"
  kubectl_admin delete pod "$name" -n default --wait=false >/dev/null
}

all_running() {
  local c
  for c in "${COMPONENTS[@]}"; do
    [[ $c == coredns && ! -x "$(component_bin coredns)" ]] && continue
    component_pid "$c" >/dev/null || return 1
  done
  apiserver_ready && node_ready
}

# --- main ----------------------------------------------------------------------------------------
mkdir -p "$(dirname "$LOCK_FILE")"
exec 9>"$LOCK_FILE"
flock -n 9 || { log "another cluster/up.sh or down.sh is running; waiting for it"; flock 9; }

if all_running; then
  log "cluster already up and healthy: reusing it"
  fresh=0
else
  ensure_packages
  bash "$HERE/lib/build-binaries.sh"
  if component_pid etcd >/dev/null && component_pid kube-apiserver >/dev/null && apiserver_ready; then
    log "control plane is up: starting the components that are not running"
    fresh=0
  else
    log "no healthy cluster found: clearing what an earlier run left, then starting fresh"
    teardown_cluster
    fresh=1
  fi
  prepare_host
  ensure_pki
  start_etcd
  start_apiserver
  apply_bootstrap_objects
  start_controllers
  start_containerd
  import_images
  start_kubelet
  start_kube_proxy
  start_coredns
  if ((fresh)); then smoke_pod; fi
fi

log "cluster up in $((SECONDS - STARTED_AT)) s; logs in $LOG_DIR"
log "kubectl $K8S_VERSION: $BIN_LINK_DIR/kubectl (export PATH=$BIN_LINK_DIR:\$PATH)"
log "images: $PAUSE_IMAGE, $TESTBOX_IMAGE; import more with: bash cluster/images/import.sh FILE.tar"
echo "export KUBECONFIG=$KUBECONFIG_PATH"
