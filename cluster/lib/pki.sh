# shellcheck shell=bash # a library (sourced by up.sh): no shebang
# The cluster's PKI, made locally with openssl, and the kubeconfigs of its clients; sourced.
# Everything is kept while the parameters it was made for (node name and IP, Service IP) stay
# the same; down.sh removes it with the rest of the cluster.

PKI_PARAMS="node=$NODE_NAME ip=$NODE_IP svc=$KUBERNETES_SERVICE_IP version=1"

# make_cert NAME SUBJECT USAGE [SAN]: a key and a CA-signed certificate; USAGE is
# serverAuth, clientAuth or serverAuth,clientAuth.
make_cert() {
  local name=$1 subject=$2 usage=$3 san=${4:-}
  local ext="$PKI_DIR/$name.ext"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $usage"
    [[ -n "$san" ]] && echo "subjectAltName = $san"
  } >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI_DIR/$name.key" -out "$PKI_DIR/$name.csr" \
    -subj "$subject" 2>/dev/null
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -CAcreateserial -out "$PKI_DIR/$name.crt" -days 3650 -sha256 -extfile "$ext" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$ext"
  chmod 600 "$PKI_DIR/$name.key"
}

# write_kubeconfig FILE USER CERT_NAME: a self-contained kubeconfig for https://127.0.0.1:6443.
write_kubeconfig() {
  local file=$1 user=$2 cert=$3
  local tmp="$file.tmp"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: podtrail
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$cert.key")
contexts:
- name: podtrail
  context:
    cluster: podtrail
    user: $user
current-context: podtrail
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}

ensure_pki() {
  if [[ -s "$PKI_DIR/params" && "$(<"$PKI_DIR/params")" == "$PKI_PARAMS" && -s "$KUBECONFIG_PATH" ]]; then
    log "PKI: reusing $PKI_DIR"
    return
  fi
  log "PKI: making the CA, serving and client certificates in $PKI_DIR"
  rm -rf "$PKI_DIR"
  mkdir -p "$PKI_DIR" "$CONF_DIR"
  chmod 700 "$PKI_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI_DIR/ca.key" -out "$PKI_DIR/ca.crt" \
    -days 3650 -sha256 -subj "/CN=podtrail-cluster-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  chmod 600 "$PKI_DIR/ca.key"
  # Service-account token signing key pair.
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$PKI_DIR/sa.key" 2>/dev/null
  openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
  chmod 600 "$PKI_DIR/sa.key"

  local svc_dns="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  svc_dns+=",DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost"
  make_cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,$svc_dns"
  make_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  make_cert admin "/O=system:masters/CN=podtrail-admin" clientAuth
  make_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
  make_cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth \
    "IP:$NODE_IP,IP:127.0.0.1,DNS:$NODE_NAME,DNS:localhost"
  make_cert controller-manager "/CN=system:kube-controller-manager" clientAuth
  make_cert scheduler "/CN=system:kube-scheduler" clientAuth
  make_cert kube-proxy "/CN=system:kube-proxy" clientAuth
  make_cert coredns "/CN=podtrail:coredns" clientAuth
  rm -f "$PKI_DIR/ca.srl"

  write_kubeconfig "$CONF_DIR/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet
  write_kubeconfig "$CONF_DIR/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  write_kubeconfig "$CONF_DIR/scheduler.kubeconfig" system:kube-scheduler scheduler
  write_kubeconfig "$CONF_DIR/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  write_kubeconfig "$CONF_DIR/coredns.kubeconfig" podtrail:coredns coredns
  write_kubeconfig "$KUBECONFIG_PATH" podtrail-admin admin
  echo "$PKI_PARAMS" >"$PKI_DIR/params"
}
