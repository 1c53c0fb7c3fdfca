# podtrail — every task a user or CI runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
K8S_BIN := /var/cache/podtrail/bin/kubernetes-v1.34.4
export PATH := $(K8S_BIN):$(PATH)

IMAGE ?= podtrail.local/podtrail:dev
export IMAGE

.PHONY: bench bench-full help install test-deployed test-helm test-prometheus test-traces test-faults test-cluster-lifecycle test-kind kind kind-down kind-load ci lint unit test cluster cluster-down run crd e2e image image-wheels image-load deploy undeploy engine-down

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-24s %s\n", $$1, $$2}'

$(BIN)/podtrail: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/podtrail ## create .venv with the operator and its development tools

lint: install ## ruff, mypy (strict), the import layering rules, shellcheck on every script
	git ls-files -z -- '*.sh' .ci/run kind/node/podtrail-cni plugins/krew/kubectl-podtrail | xargs -0 $(BIN)/shellcheck
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install ## the fast tests: pure core, shell with fakes, replays, the kubectl plugin (no cluster)
	$(BIN)/pytest -q tests/unit tests/shell tests/cli tests/support $(wildcard tests/replay)

test: lint ## everything: lint, unit tests, then every suite on the chosen cluster (the local one brought up when none answers)
	$(BIN)/pytest -q --timeout=2400

cluster: ## bring up the local single-node cluster (builds and caches Kubernetes on first use)
	bash cluster/up.sh

cluster-down: ## stop the local cluster and remove everything it left on the machine
	bash cluster/down.sh

# The cluster a target acts on (cluster/context.sh: KUBECONFIG, else ~/.kube/config when it
# answers, else the local cluster, brought up); $(1) says what the target changes there.
choose-cluster = eval "$$(bash cluster/context.sh --ensure --changes '$(1)')"

crd: ## apply the CRD to the chosen cluster (KUBECONFIG, ~/.kube/config, else the local one)
	@$(call choose-cluster,apply the CRD); \
	  $$KUBECTL apply -k crds/ && $$KUBECTL wait --for=condition=Established --timeout=60s crd/podlifecyclerecords.podtrail.io

run: install ## run the operator in the foreground against the chosen cluster (as `make crd`)
	@$(call choose-cluster,run the operator); \
	  $$KUBECTL apply -k crds/ >/dev/null && $$KUBECTL wait --for=condition=Established --timeout=60s crd/podlifecyclerecords.podtrail.io >/dev/null; \
	  echo "operator on context $$KUBE_CONTEXT; in another shell: KUBECONFIG=$$KUBECONFIG kubectl get plr -A -w"; \
	  exec $(BIN)/podtrail --log-format console

e2e: install ## end-to-end tests against the operator deployed in the current cluster (make deploy)
	PODTRAIL_E2E_OPERATOR=deployed $(BIN)/pytest -q --timeout=1200 tests/e2e

test-deployed: install ## make deploy (image built, loaded, pinned by digest), the e2e suite against it, undeploy
	$(MAKE) deploy DEPLOY_ENV="PODTRAIL_COALESCE_SECONDS=0.5 PODTRAIL_SWEEP_SECONDS=2"
	$(MAKE) e2e; rc=$$?; $(MAKE) undeploy; exit $$rc

test-faults: install ## the fault suite on the local cluster: operator kills, API server stopped and frozen, refused writes, floods, throttling (~8 min)
	PODTRAIL_FAULT_TESTS=1 $(BIN)/pytest -q -s --timeout=1500 tests/faults

test-helm: install ## the Helm chart: lint, render, compare with manifests/; then install, upgrade, uninstall $(IMAGE) on the chosen cluster
	$(BIN)/pytest -q tests/deploy/test_chart.py
	$(MAKE) image image-load
	PODTRAIL_HELM_TESTS=1 $(BIN)/pytest -q --timeout=900 tests/deploy/test_chart_install.py

test-prometheus: install ## the alert rules and dashboard checked with promtool, then Prometheus scraping the operator on the chosen cluster until the kill alert fires
	$(BIN)/pytest -q tests/monitoring
	PODTRAIL_PROMETHEUS_TESTS=1 $(BIN)/pytest -q -s --timeout=900 tests/monitoring/test_prometheus_run.py

test-traces: install ## an OpenTelemetry Collector (built from its Go module, cached) receiving the operator's OTLP traces of pods on the chosen cluster
	bash image/otelcol.sh >/dev/null  # built once into the cache (minutes), outside the tests' timeouts
	PODTRAIL_TRACE_TESTS=1 $(BIN)/pytest -q -s --timeout=900 tests/support/test_collector.py tests/traces

test-cluster-lifecycle: install ## make cluster twice, cluster-down then up, recovery after a crash (restarts the local cluster)
	PODTRAIL_CLUSTER_LIFECYCLE_TESTS=1 $(BIN)/pytest -q tests/cluster/test_lifecycle.py

test-kind: install ## on kind (made here, no local cluster): make deploy there, tests/e2e then tests/kind, then kind-down
	eval "$$(bash kind/up.sh | grep '^export KUBECONFIG=')"; \
	  $(MAKE) deploy DEPLOY_ENV="PODTRAIL_COALESCE_SECONDS=0.5 PODTRAIL_SWEEP_SECONDS=2" && \
	  PODTRAIL_E2E_OPERATOR=deployed $(BIN)/pytest -q --timeout=1200 tests/e2e; rc=$$?; \
	  PODTRAIL_BESIDE_LOCAL_TESTS=1 PODTRAIL_E2E_OPERATOR=deployed $(BIN)/pytest -q --timeout=1200 tests/kind || rc=1; \
	  bash kind/down.sh || rc=1; exit $$rc

ci: ## what CI runs: the whole suite, the deployed operator's e2e, the Helm chart, Prometheus and the alert rules, OTLP traces to a real collector, the fault suite (local cluster), kind, the cluster's lifecycle
	$(MAKE) test
	$(MAKE) test-deployed
	$(MAKE) test-helm
	$(MAKE) test-prometheus
	$(MAKE) test-traces
	$(MAKE) test-faults
	$(MAKE) test-kind
	$(MAKE) test-cluster-lifecycle

image: ## build the operator image $(IMAGE) (wheels on the host; a local Docker engine and Debian base where none runs)
	bash image/build.sh

image-wheels: ## the image's wheels for PLATFORMS (default linux/amd64,linux/arm64) into build/wheels/<arch>/, for a multi-platform build
	bash image/build.sh --wheels-only

image-load: ## put $(IMAGE) on the chosen cluster's nodes (kind, minikube, k3d or the local cluster: image/load.sh)
	bash image/load.sh

deploy: ## build $(IMAGE), load it (or push: REGISTRY=), apply manifests/ pinned by digest, wait (CONFIRM=1 beyond local clusters)
	bash image/deploy.sh

undeploy: ## remove the operator; the CRD and the records stay unless WITH_CRD=1
	bash image/undeploy.sh

engine-down: ## stop the local Docker engine and remove what dockerd left (PURGE=1 also drops its images)
	bash image/engine-down.sh

kind: ## bring up the kind cluster (1 control plane + KIND_WORKERS workers) and load $(IMAGE) and the tests' images
	bash kind/up.sh

kind-down: ## delete the kind cluster and everything it left (the engine keeps running: make engine-down)
	bash kind/down.sh

kind-load: ## load $(IMAGE) and the tests' images into the kind nodes
	bash kind/load.sh

bench: install ## the benchmark, quick: operator vs a raw watch vs kube-state-metrics on the local cluster
	bash bench/run.sh --quick

bench-full: install ## the benchmark's full matrix (1,000 and 5,000 pods; 20, 100, 300 transitions/s)
	bash bench/run.sh --full

.PHONY: bench-huge
bench-huge: install ## the benchmark at 20,000 pods, 20 transitions/s, twice (tens of minutes)
	bash bench/run.sh --huge
