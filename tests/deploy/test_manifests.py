"""The kustomize base users apply (manifests/) and the example overlay, rendered by kubectl."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.shell.leader import ElectionConfig
from tests.deploy.helpers import (
    EXAMPLE_OVERLAY,
    IMAGE_TOOLING,
    MANIFESTS,
    REPO,
    Obj,
    find,
    render,
    rule_set,
)

NAMESPACE = "podtrail-system"
RELEASED_IMAGE = "ghcr.io/podtrail/podtrail:v0.1.0"
RECORDS = "podlifecyclerecords"
READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch", "delete"}

OPERATOR_RULES = (
    {("", resource, verb) for resource in ("pods", "events", "namespaces") for verb in READ}
    | {("", "events", "create")}  # a Warning Event on a record that cannot be written
    | {("discovery.k8s.io", "endpointslices", verb) for verb in READ}
    | {("podtrail.io", RECORDS, verb) for verb in READ | WRITE}
    | {("podtrail.io", f"{RECORDS}/status", verb) for verb in ("get", "update", "patch")}
)
LEADER_ELECTION = "podtrail-leader-election"


@pytest.fixture(scope="module")
def base(kubectl_bin: str) -> list[Obj]:
    return render(kubectl_bin, MANIFESTS)


@pytest.fixture(scope="module")
def overlay(kubectl_bin: str) -> list[Obj]:
    return render(kubectl_bin, EXAMPLE_OVERLAY)


def operator_container(objects: list[Obj]) -> Obj:
    deployment = find(objects, "Deployment", "podtrail")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def env_of(container: Obj) -> dict[str, str]:
    """The container's environment variables with literal values."""
    return {item["name"]: item["value"] for item in container.get("env") or [] if "value" in item}


def downward_env_of(container: Obj) -> dict[str, str]:
    """The container's environment variables from the downward API: name -> field path."""
    return {
        item["name"]: item["valueFrom"]["fieldRef"]["fieldPath"]
        for item in container.get("env") or []
        if "fieldRef" in (item.get("valueFrom") or {})
    }


def named_rules(role: Obj) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """A role's rules as (apiGroup, resource, verb, resourceNames) quadruples."""
    return {
        (group, resource, verb, tuple(rule.get("resourceNames") or ()))
        for rule in role.get("rules") or []
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }


def port_number(container: Obj, port: Any) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_base_renders_what_users_install(base: list[Obj]) -> None:
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in base)
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            ("CustomResourceDefinition", f"{RECORDS}.podtrail.io"),
            ("ServiceAccount", "podtrail"),
            ("ClusterRole", "podtrail"),
            ("ClusterRoleBinding", "podtrail"),
            ("ClusterRole", "podtrail-records-viewer"),
            ("ClusterRole", "podtrail-records-editor"),
            ("ClusterRole", "podtrail-records-admin"),
            ("Role", LEADER_ELECTION),
            ("RoleBinding", LEADER_ELECTION),
            ("Deployment", "podtrail"),
            ("PodDisruptionBudget", "podtrail"),
            ("Service", "podtrail-metrics"),
        ]
    )
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in base:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "podtrail"


def test_crd_comes_from_crds_folder(base: list[Obj], kubectl_bin: str) -> None:
    crd = find(base, "CustomResourceDefinition", f"{RECORDS}.podtrail.io")
    source = render(kubectl_bin, REPO / "crds")
    assert crd["spec"] == source[0]["spec"]
    assert "../crds" in yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"]


def test_namespace_enforces_restricted_pod_security(base: list[Obj]) -> None:
    labels = find(base, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_deployment_runs_a_leader_and_a_standby(base: list[Obj]) -> None:
    spec = find(base, "Deployment", "podtrail")["spec"]
    assert spec["replicas"] == 2
    # A rollout adds the new pod before an old one leaves: a standby is always there to take
    # over from a leader that is stopped.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    template = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert template["spec"]["serviceAccountName"] == "podtrail"
    # Longer than the flush on SIGTERM (20 s) plus the release of the Lease.
    assert template["spec"]["terminationGracePeriodSeconds"] >= 30
    affinity = template["spec"]["affinity"]["podAntiAffinity"]
    (preferred,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    # Service links would set PODTRAIL_METRICS_PORT=tcp://... from the podtrail-metrics Service.
    assert template["spec"]["enableServiceLinks"] is False


def test_deployment_uses_the_released_image(base: list[Obj]) -> None:
    container = operator_container(base)
    assert container["image"] == RELEASED_IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"


def test_deployment_is_hardened(base: list[Obj]) -> None:
    pod_spec = find(base, "Deployment", "podtrail")["spec"]["template"]["spec"]
    pod_security = pod_spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert isinstance(pod_security["runAsUser"], int) and pod_security["runAsUser"] > 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(base)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert security.get("privileged", False) is False
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable place: an emptyDir at /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    assert not pod_spec.get("hostNetwork") and not pod_spec.get("hostPID")


def test_deployment_has_probes_and_resources(base: list[Obj]) -> None:
    container = operator_container(base)
    for probe in ("livenessProbe", "readinessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz", probe
        assert port_number(container, http["port"]) == 8080, probe
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert set(resources[kind]) >= {"cpu", "memory"}, kind
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    assert env_of(container) == {"PODTRAIL_LOG_FORMAT": "json"}


def test_leader_election_identity_comes_from_the_downward_api(base: list[Obj]) -> None:
    assert downward_env_of(operator_container(base)) == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }


def test_disruption_budget_keeps_the_standby_during_a_drain(base: list[Obj]) -> None:
    budget = find(base, "PodDisruptionBudget", "podtrail")
    assert budget["metadata"]["namespace"] == NAMESPACE
    assert budget["spec"]["maxUnavailable"] == 1
    selector = find(base, "Deployment", "podtrail")["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"] == selector


def test_leader_election_role_is_namespaced_and_names_its_lease(base: list[Obj]) -> None:
    role = find(base, "Role", LEADER_ELECTION)
    assert role["metadata"]["namespace"] == NAMESPACE
    lease = ("coordination.k8s.io", "leases")
    assert ElectionConfig(identity="any").lease_name == "podtrail"  # the operator's default
    # create cannot be restricted by name; get and update touch only the operator's Lease.
    assert named_rules(role) == {
        (*lease, "create", ()),
        (*lease, "get", ("podtrail",)),
        (*lease, "update", ("podtrail",)),
    }
    binding = find(base, "RoleBinding", LEADER_ELECTION)
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": LEADER_ELECTION,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "podtrail", "namespace": NAMESPACE}
    ]


def test_metrics_service_selects_the_operator(base: list[Obj]) -> None:
    service = find(base, "Service", "podtrail-metrics")
    pod_labels = find(base, "Deployment", "podtrail")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 9090
    assert port_number(operator_container(base), port["targetPort"]) == 9090


def test_operator_role_has_exactly_the_verbs_it_uses(base: list[Obj]) -> None:
    assert rule_set(find(base, "ClusterRole", "podtrail")) == OPERATOR_RULES
    binding = find(base, "ClusterRoleBinding", "podtrail")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "podtrail",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "podtrail", "namespace": NAMESPACE}
    ]


@pytest.mark.parametrize(
    ("name", "aggregate_to", "verbs"),
    [
        ("podtrail-records-viewer", "view", READ),
        ("podtrail-records-editor", "edit", READ | WRITE),
        ("podtrail-records-admin", "admin", READ | WRITE),
    ],
)
def test_aggregated_roles(base: list[Obj], name: str, aggregate_to: str, verbs: set[str]) -> None:
    role = find(base, "ClusterRole", name)
    labels = role["metadata"]["labels"]
    assert labels[f"rbac.authorization.k8s.io/aggregate-to-{aggregate_to}"] == "true"
    assert [key for key in labels if key.startswith("rbac.authorization.k8s.io/aggregate-to-")] == [
        f"rbac.authorization.k8s.io/aggregate-to-{aggregate_to}"
    ]
    assert rule_set(role) == {("podtrail.io", RECORDS, verb) for verb in verbs}


def test_no_role_grants_secrets_or_wildcards(base: list[Obj]) -> None:
    for role in (obj for obj in base if obj["kind"] in ("ClusterRole", "Role")):
        for group, resource, verb, _ in named_rules(role):
            assert "*" not in (group, resource, verb), role["metadata"]["name"]
            assert resource != "secrets", role["metadata"]["name"]


def test_example_overlay_sets_the_options(base: list[Obj], overlay: list[Obj]) -> None:
    assert EXAMPLE_OVERLAY.resolve().parent != MANIFESTS.resolve()
    assert MANIFESTS.resolve() not in EXAMPLE_OVERLAY.resolve().parents
    env = env_of(operator_container(overlay))
    assert env == {
        "PODTRAIL_NAMESPACES": "team-a,team-b",
        "PODTRAIL_OPT_IN": "true",
        "PODTRAIL_RETENTION_SECONDS": "604800",
        "PODTRAIL_MAX_RECORDS_PER_NAMESPACE": "500",
        "PODTRAIL_LOG_FORMAT": "console",
    }
    assert downward_env_of(operator_container(overlay)) == downward_env_of(operator_container(base))
    # Everything else is the base, untouched.
    assert sorted((o["kind"], o["metadata"]["name"]) for o in overlay) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in base
    )
    without_env = [operator_container(objs) for objs in (base, overlay)]
    for container in without_env:
        container.pop("env")
    assert without_env[0] == without_env[1]


def fake_kubectl(tmp_path: Path) -> Path:
    """A kubectl of a kind cluster that answers, logs its arguments and succeeds."""
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *current-context*) echo kind-fake; exit 0 ;; esac\n'
        'case "$*" in *"config view"*) echo "https://$KUBECONFIG"; exit 0 ;; esac\n'
        f'echo "$@" >> {tmp_path}/kubectl.log\n'
    )
    script.chmod(0o755)
    return script


def generated(kubectl_bin: str, tool: str, tmp_path: Path, **env: str) -> list[Obj]:
    """Run image/deploy.sh or undeploy.sh against a fake kubectl; render what it generated."""
    build = tmp_path / "build"
    result = subprocess.run(
        ["bash", str(IMAGE_TOOLING / f"{tool}.sh")],
        env={
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "KUBECTL": str(fake_kubectl(tmp_path)),
            "KUBECONFIG": str(tmp_path / "kubeconfig"),
            "BUILD_DIR": str(build),
            "IMAGE_ENGINE": "host",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return render(kubectl_bin, build / tool)


PINNED = "podtrail.local/podtrail@sha256:" + "0123456789abcdef" * 4


def test_deploy_refuses_a_context_that_is_not_a_known_local_cluster(
    kubectl_bin: str, tmp_path: Path
) -> None:
    kubectl = fake_kubectl(tmp_path)
    kubectl.write_text(kubectl.read_text().replace("kind-fake", "prod-eu-1"))
    env = {"KUBECTL": str(kubectl), "KUBECONFIG": str(tmp_path / "kubeconfig")}
    env["IMAGE_REFERENCE"] = PINNED
    env["PATH"] = "/usr/bin:/bin"
    result = subprocess.run(
        ["bash", str(IMAGE_TOOLING / "deploy.sh")], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "prod-eu-1" in result.stderr and "CONFIRM=1" in result.stderr
    assert "apply -k" not in (tmp_path / "kubectl.log").read_text(), "nothing was applied"
    confirmed = generated(kubectl_bin, "deploy", tmp_path, IMAGE_REFERENCE=PINNED, CONFIRM="1")
    assert operator_container(confirmed)["image"] == PINNED


def test_deploy_overlay_swaps_the_image_only(
    kubectl_bin: str, base: list[Obj], tmp_path: Path
) -> None:
    before = (MANIFESTS / "kustomization.yaml").read_text()
    objects = generated(
        kubectl_bin,
        "deploy",
        tmp_path,
        IMAGE_REFERENCE=PINNED,
        DEPLOY_ENV="PODTRAIL_SWEEP_SECONDS=2",
    )
    assert (MANIFESTS / "kustomization.yaml").read_text() == before, "the base is never edited"
    container = operator_container(objects)
    assert container["image"] == PINNED
    assert env_of(container) == {"PODTRAIL_LOG_FORMAT": "json", "PODTRAIL_SWEEP_SECONDS": "2"}
    annotations = find(objects, "Deployment", "podtrail")["spec"]["template"]["metadata"]
    assert "podtrail.io/image-id" in annotations["annotations"]
    log = (tmp_path / "kubectl.log").read_text()
    assert f"apply -k {tmp_path}/build/deploy" in log
    assert "rollout status deployment/podtrail" in log
    assert len(objects) == len(base)


@pytest.mark.parametrize("with_crd", ["0", "1"])
def test_undeploy_keeps_the_crd_unless_asked(
    kubectl_bin: str, tmp_path: Path, with_crd: str
) -> None:
    objects = generated(kubectl_bin, "undeploy", tmp_path, WITH_CRD=with_crd)
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    assert len(crds) == (1 if with_crd == "1" else 0)
    assert {o["kind"] for o in objects} >= {"Namespace", "ClusterRole", "Deployment"}
    assert f"delete -k {tmp_path}/build/undeploy" in (tmp_path / "kubectl.log").read_text()
