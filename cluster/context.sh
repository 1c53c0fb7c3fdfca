#!/usr/bin/env bash
# Which cluster a command acts on: one rule for the Makefile, the scripts and the tests.
#   1. KUBECONFIG when it is set (a list of files too), its current context. An explicit choice
#      is never replaced by another cluster: when it does not answer, the command stops (unless
#      it names the project's local cluster, which is then brought up where asked).
#   2. Else ~/.kube/config's current context, when its API server answers.
#   3. Else the project's local cluster (make cluster), and the choice says so.
# Flavours: kind, minikube, k3d, docker-desktop (from the context's name), local (the project's
# own cluster: the same API server as its kubeconfig), other (anything else: a command that
# changes such a cluster needs CONFIRM=1).
#
# Run:     bash cluster/context.sh [--ensure] [--changes WHAT]
#          prints `export KUBECONFIG=...` lines (also KUBECTL, KUBE_CONTEXT, CLUSTER_FLAVOUR,
#          CLUSTER_SOURCE) for `eval`, values shell-quoted; the choice in words on stderr.
#   --ensure        bring the local cluster up when it is the choice and is not running
#   --changes WHAT  the caller changes the cluster: WHAT (e.g. "deploy the operator") is printed
#                   with the context, and refused on a flavour "other" unless CONFIRM=1
# Source:  choose_cluster [--ensure] [--changes WHAT] sets and exports the same variables and
#          KUBECTL (the locally built kubectl matching the local cluster when there is one,
#          else kubectl on PATH).
# Variables: KUBECONFIG, CONFIRM, KUBECTL, PODTRAIL_CLUSTER_DIR, CONTEXT_PROBE_TIMEOUT (5s).

_CONTEXT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOCAL_CLUSTER_DIR=${PODTRAIL_CLUSTER_DIR:-/var/lib/podtrail/cluster}
LOCAL_KUBECONFIG=$LOCAL_CLUSTER_DIR/kubeconfig
LOCAL_K8S_BIN=${PODTRAIL_CACHE_DIR:-/var/cache/podtrail}/bin/kubernetes-${K8S_VERSION:-v1.34.4}

_ctx_log() { printf '%s [cluster] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
_ctx_die() { printf '%s [cluster] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; return 1; }

# One way to find kubectl: the one built for the local cluster, else the one on PATH.
find_kubectl() {
  if [[ -n ${KUBECTL:-} ]]; then printf '%s\n' "$KUBECTL"
  elif [[ -x $LOCAL_K8S_BIN/kubectl ]]; then printf '%s\n' "$LOCAL_K8S_BIN/kubectl"
  elif [[ -x $LOCAL_CLUSTER_DIR/bin/kubectl ]]; then printf '%s\n' "$LOCAL_CLUSTER_DIR/bin/kubectl"
  elif command -v kubectl >/dev/null 2>&1; then command -v kubectl
  else return 1
  fi
}

# True when the current context of the kubeconfig (list) $1 has an API server that answers.
_ctx_answers() {
  local kubectl=$1 config=$2
  [[ -n $kubectl ]] || return 1
  KUBECONFIG=$config "$kubectl" --request-timeout="${CONTEXT_PROBE_TIMEOUT:-5s}" \
    get --raw /readyz >/dev/null 2>&1
}

_ctx_server() {  # kubectl, kubeconfig (list): the current context's API server URL
  KUBECONFIG=$2 "$1" config view --minify -o 'jsonpath={.clusters[0].cluster.server}' 2>/dev/null || true
}

_ctx_flavour() {  # kubectl, kubeconfig (list), context name
  local kubectl=$1 config=$2 context=$3 server local_server
  if [[ $config == "$LOCAL_KUBECONFIG" ]]; then echo local; return; fi
  if [[ -n $kubectl && -f $LOCAL_KUBECONFIG ]]; then
    server=$(_ctx_server "$kubectl" "$config")
    local_server=$(_ctx_server "$kubectl" "$LOCAL_KUBECONFIG")
    if [[ -n $server && $server == "$local_server" ]]; then echo local; return; fi
  fi
  case $context in
    kind-*) echo kind ;;
    minikube) echo minikube ;;
    k3d-*) echo k3d ;;
    docker-desktop | docker-for-desktop) echo docker-desktop ;;
    *) echo other ;;
  esac
}

# shellcheck disable=SC2088 # "~/.kube/config" is shown to the user as it is: no path to expand
_ctx_source_words() {
  case $1 in home) echo "~/.kube/config" ;; local) echo "the project's local cluster" ;; *) echo "$1" ;; esac
}

choose_cluster() {
  local ensure=0 changes='' kubectl config source home_config=${HOME:-/root}/.kube/config
  while (($#)); do
    case $1 in
      --ensure) ensure=1 ;;
      --changes) changes=$2; shift ;;
      *) _ctx_die "choose_cluster: unknown argument $1" || return 1 ;;
    esac
    shift
  done
  kubectl=$(find_kubectl || true)
  if [[ -n ${KUBECONFIG:-} ]]; then
    config=$KUBECONFIG source=KUBECONFIG
  elif [[ -f $home_config ]] && _ctx_answers "$kubectl" "$home_config"; then
    config=$home_config source=home
  else
    config=$LOCAL_KUBECONFIG source=local
    _ctx_log "no KUBECONFIG set and no cluster answers at ~/.kube/config: the project's local cluster"
  fi
  if [[ $config == "$LOCAL_KUBECONFIG" ]] && { [[ ! -f $config ]] || ! _ctx_answers "$kubectl" "$config"; }; then
    ((ensure)) || _ctx_die "the local cluster is not running: make cluster (as root) brings it up" || return 1
    bash "$_CONTEXT_DIR/up.sh" >&2 || _ctx_die "cluster/up.sh failed" || return 1
    kubectl=$(find_kubectl || true)
  elif [[ $source == KUBECONFIG ]] && ! _ctx_answers "$kubectl" "$config"; then
    _ctx_die "the cluster KUBECONFIG=$config names does not answer${kubectl:+ (}${kubectl:-: no kubectl found}${kubectl:+ get --raw /readyz failed)}; unset KUBECONFIG to use ~/.kube/config or the local cluster" || return 1
  fi
  [[ -n $kubectl ]] || _ctx_die "no kubectl: put one on PATH (or make cluster builds one)" || return 1
  KUBECONFIG=$config KUBECTL=$kubectl CLUSTER_SOURCE=$source
  KUBE_CONTEXT=$(KUBECONFIG=$config "$kubectl" config current-context 2>/dev/null || echo '?')
  CLUSTER_FLAVOUR=$(_ctx_flavour "$kubectl" "$config" "$KUBE_CONTEXT")
  export KUBECONFIG KUBECTL KUBE_CONTEXT CLUSTER_FLAVOUR CLUSTER_SOURCE
  if [[ -n $changes ]]; then
    _ctx_log "$changes on context $KUBE_CONTEXT ($CLUSTER_FLAVOUR, from $(_ctx_source_words "$source"))"
    if [[ $CLUSTER_FLAVOUR == other && ${CONFIRM:-0} != 1 ]]; then
      _ctx_die "context $KUBE_CONTEXT is not a known local cluster (kind, minikube, k3d, docker-desktop, the project's own): CONFIRM=1 to $changes there" || return 1
    fi
  else
    _ctx_log "context $KUBE_CONTEXT ($CLUSTER_FLAVOUR, from $(_ctx_source_words "$source"))"
  fi
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  choose_cluster "$@"
  for name in KUBECONFIG KUBECTL KUBE_CONTEXT CLUSTER_FLAVOUR CLUSTER_SOURCE; do
    printf 'export %s=%q\n' "$name" "${!name}"
  done
fi
