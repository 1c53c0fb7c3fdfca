"""The Helm chart (charts/podtrail), rendered by helm: no cluster.

The chart must deploy what the kustomize base (manifests/) deploys: the same RBAC rules and the
same operator Deployment, compared after the names, labels and namespace that legitimately
differ are normalised away. Either side drifting fails `test_deployment_matches_the_base` or
`test_rbac_matches_the_base`. helm comes from image/helm.sh (built from its Go module on first
use); without a Go toolchain or a cached helm these tests are skipped.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from podtrail.core.limits import MAX_MESSAGE_LENGTH, MAX_PREVIOUS_INSTANCES, MAX_TIMELINE_ENTRIES
from podtrail.shell.metrics import Metrics
from podtrail.shell.settings import PodtrailSettings, parse_settings
from tests.deploy.helpers import IMAGE_TOOLING, MANIFESTS, REPO, Obj, find, render

CHART = REPO / "charts" / "podtrail"
CRD_FILE = "podtrail.io_podlifecyclerecords.yaml"
# Client-side rendering has no server to ask; this is the cluster version podtrail is developed
# on (a `helm` built by `go install` would otherwise assume 1.20, below the chart's kubeVersion).
KUBE_VERSION = "1.34.4"
RELEASE = "trail"
NAMESPACE = "observability"
FULLNAME = "trail-podtrail"
RECORDS = "podlifecyclerecords"
DIGEST = "sha256:" + "0123456789abcdef" * 4
SCHEMA_REFUSAL = "values don't meet the specifications of the schema"

# Every switch of the chart turned on (and every option set to something else than its default).
EVERYTHING_ON: Obj = {
    "image": {"tag": "v9.9.9", "digest": DIGEST, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry"}],
    "replicaCount": 3,
    "leaderElection": {"enabled": True, "leaseName": "podtrail-lease"},
    "operator": {
        "namespaces": ["team-a", "team-b"],
        "optIn": True,
        "retentionSeconds": 604800,
        "maxRecordsPerNamespace": 500,
        "maxRecords": 5000,
        "timelineEntries": 300,
        "messageLength": 128,
        "messages": "none",
        "previousInstances": 2,
        "logFormat": "console",
        "logLevel": "debug",
    },
    "extraEnv": [{"name": "PODTRAIL_SWEEP_SECONDS", "value": "30"}],
    "podAnnotations": {"example.com/note": "chart test"},
    "podLabels": {"team": "platform"},
    "priorityClassName": "system-cluster-critical",
    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    "serviceAccount": {"create": True, "name": "tracker", "annotations": {"a": "b"}},
    "rbac": {"aggregateToDefaultRoles": True},
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
    "metrics": {
        "service": {"enabled": True, "port": 9191},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {
            "enabled": True,
            "labels": {"release": "prometheus"},
            "extraRules": [{"alert": "PodtrailExtra", "expr": "vector(1) > 2", "for": "1m"}],
        },
    },
}


def helm_binary() -> str:
    """helm from image/helm.sh (cached, else built); skips the test when it cannot be had."""
    result = subprocess.run(
        ["bash", str(IMAGE_TOOLING / "helm.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        said = result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
        pytest.skip(f"helm cannot be had here (image/helm.sh: {said[-1]})")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_binary()


def helm_run(helm: str, *args: str, values: Obj | None = None) -> subprocess.CompletedProcess[str]:
    command = [helm, *args]
    if values is not None:
        command += ["--values", "-"]
    return subprocess.run(
        command,
        input=yaml.safe_dump(values) if values is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def template(
    helm: str,
    values: Obj | None = None,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    *extra: str,
) -> list[Obj]:
    """`helm template` as a list of objects; fails the test on any error."""
    result = helm_run(
        helm,
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *extra,
        values=values,
    )
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refusal(helm: str, values: Obj) -> str:
    """What `helm template` says when it refuses these values (fails the test if it renders)."""
    result = helm_run(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        values=values,
    )
    assert result.returncode != 0, f"rendered although it should not have:\n{values}"
    return result.stderr


@pytest.fixture(scope="module")
def chart(helm: str) -> list[Obj]:
    return template(helm)


@pytest.fixture(scope="module")
def everything(helm: str) -> list[Obj]:
    return template(helm, EVERYTHING_ON)


@pytest.fixture(scope="module")
def base(kubectl_bin: str) -> list[Obj]:
    return render(kubectl_bin, MANIFESTS)


def of_kind(objects: Iterable[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def only(objects: Iterable[Obj], kind: str) -> Obj:
    (found,) = of_kind(objects, kind)
    return found


def container(objects: Iterable[Obj]) -> Obj:
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return dict(containers[0])


def literal_env(container: Obj) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env") or [] if "value" in item}


def operator_settings(container: Obj, namespace: str) -> PodtrailSettings:
    """What the operator would run with: its literal variables, POD_NAMESPACE as the pod's."""
    return parse_settings([], {**literal_env(container), "POD_NAMESPACE": namespace})


def operator_role(objects: Iterable[Obj]) -> Obj:
    """The ClusterRole bound to the operator's ServiceAccount."""
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    return find(objects, "ClusterRole", binding["roleRef"]["name"])


def aggregated_roles(objects: Iterable[Obj]) -> dict[str, Obj]:
    """The records' ClusterRoles by the built-in role they extend (view, edit, admin)."""
    prefix = "rbac.authorization.k8s.io/aggregate-to-"
    found: dict[str, Obj] = {}
    for role in of_kind(objects, "ClusterRole"):
        for label in role["metadata"].get("labels") or {}:
            if label.startswith(prefix):
                found[label.removeprefix(prefix)] = role
    return found


def rules(role: Obj, lease: str | None = None) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """A role's rules as (apiGroup, resource, verb, resourceNames); the Lease's name as LEASE."""
    return {
        (
            group,
            resource,
            verb,
            tuple("LEASE" if name == lease else name for name in rule.get("resourceNames") or ()),
        )
        for rule in role.get("rules") or []
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }


def normalised_deployment(objects: list[Obj], namespace: str) -> Obj:
    """The Deployment's spec with what may differ between the base and a release replaced.

    Labels and selectors (the chart adds app.kubernetes.io/instance) become SELECTOR after
    checking that they select the pods; the ServiceAccount's name becomes SERVICE-ACCOUNT after
    checking that it is the one the RBAC binds; the literal variables become the settings the
    operator parses from them, with the Lease's name LEASE after checking that it is the one the
    leader-election Role grants. Everything else is kept as it is.
    """
    deployment = only(objects, "Deployment")
    spec: Obj = copy.deepcopy(deployment["spec"])
    selector = spec["selector"]["matchLabels"]
    template = spec["template"]
    assert selector.items() <= template["metadata"]["labels"].items()
    spec["selector"]["matchLabels"] = "SELECTOR"
    template["metadata"]["labels"] = "SELECTOR"
    anti = template["spec"]["affinity"]["podAntiAffinity"]
    for term in anti["preferredDuringSchedulingIgnoredDuringExecution"]:
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector
        term["podAffinityTerm"]["labelSelector"]["matchLabels"] = "SELECTOR"
    account = template["spec"]["serviceAccountName"]
    assert only(objects, "ServiceAccount")["metadata"]["name"] == account
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        ]
    template["spec"]["serviceAccountName"] = "SERVICE-ACCOUNT"
    (operator,) = template["spec"]["containers"]
    settings = operator_settings(operator, namespace)
    role = only(objects, "Role")
    assert rules(role, settings.lease_name) >= {
        ("coordination.k8s.io", "leases", "get", ("LEASE",)),
        ("coordination.k8s.io", "leases", "update", ("LEASE",)),
    }, f"the Role does not grant the Lease {settings.lease_name!r} the operator uses"
    operator["env"] = {
        "settings": {
            **{
                field: value
                for field, value in vars_of(settings).items()
                if field not in ("lease_name", "lease_namespace")
            },
            "lease_name": "LEASE",
            "lease_namespace_is_the_pods": settings.lease_namespace == namespace,
        },
        "downward": [item for item in operator.get("env") or [] if "value" not in item],
    }
    return spec


def vars_of(settings: PodtrailSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in PodtrailSettings.__dataclass_fields__}


def test_lint_is_clean(helm: str, tmp_path: Path) -> None:
    everything = tmp_path / "everything.yaml"
    everything.write_text(yaml.safe_dump(EVERYTHING_ON))
    for extra in ([], ["--values", str(everything)]):
        result = subprocess.run(
            [helm, "lint", "--strict", str(CHART), *extra],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_chart_version_and_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert chart["name"] == "podtrail"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == f"v{project['version']}" == image["newTag"]


def test_crd_is_the_repositorys(helm: str) -> None:
    """crds/ holds the very CRD the base installs: Helm installs it and never deletes it."""
    charted = list(yaml.safe_load_all((CHART / "crds" / CRD_FILE).read_text()))
    source = list(yaml.safe_load_all((REPO / "crds" / CRD_FILE).read_text()))
    assert charted == source, f"cp crds/{CRD_FILE} charts/podtrail/crds/"
    assert [p.name for p in (CHART / "crds").iterdir()] == [CRD_FILE]
    # Not a template: `helm uninstall` would delete it, and every record with it.
    rendered = template(helm)
    assert of_kind(rendered, "CustomResourceDefinition") == []
    with_crds = template(helm, None, RELEASE, NAMESPACE, "--include-crds")
    (crd,) = of_kind(with_crds, "CustomResourceDefinition")
    assert crd["metadata"]["name"] == f"{RECORDS}.podtrail.io"


def test_renders_what_the_base_installs(chart: list[Obj], base: list[Obj]) -> None:
    # The base also creates its Namespace (the release's is Helm's) and the CRD (crds/).
    expected = Counter(
        o["kind"] for o in base if o["kind"] not in ("Namespace", "CustomResourceDefinition")
    )
    assert Counter(o["kind"] for o in chart) == expected
    names = sorted((o["kind"], o["metadata"]["name"]) for o in chart)
    cluster = f"{NAMESPACE}-{FULLNAME}"
    assert names == sorted(
        [
            ("ServiceAccount", FULLNAME),
            ("ClusterRole", cluster),
            ("ClusterRoleBinding", cluster),
            ("ClusterRole", f"{cluster}-records-viewer"),
            ("ClusterRole", f"{cluster}-records-editor"),
            ("ClusterRole", f"{cluster}-records-admin"),
            ("Role", f"{FULLNAME}-leader-election"),
            ("RoleBinding", f"{FULLNAME}-leader-election"),
            ("Deployment", FULLNAME),
            ("PodDisruptionBudget", FULLNAME),
            ("Service", f"{FULLNAME}-metrics"),
        ]
    )
    for obj in chart:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/part-of"] == "podtrail"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]


def test_rbac_matches_the_base(chart: list[Obj], base: list[Obj]) -> None:
    assert rules(operator_role(chart)) == rules(operator_role(base))
    chart_roles, base_roles = aggregated_roles(chart), aggregated_roles(base)
    assert set(chart_roles) == set(base_roles) == {"view", "edit", "admin"}
    for built_in, role in chart_roles.items():
        assert rules(role) == rules(base_roles[built_in]), built_in
    chart_lease = operator_settings(container(chart), NAMESPACE).lease_name
    base_lease = operator_settings(container(base), "podtrail-system").lease_name
    chart_role, base_role = only(chart, "Role"), only(base, "Role")
    assert rules(chart_role, chart_lease) == rules(base_role, base_lease)
    for objects in (chart, base):
        (binding,) = of_kind(objects, "ClusterRoleBinding")
        assert binding["roleRef"]["name"] == operator_role(objects)["metadata"]["name"]
        role_binding = only(objects, "RoleBinding")
        assert role_binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": only(objects, "Role")["metadata"]["name"],
        }


def test_deployment_matches_the_base(chart: list[Obj], base: list[Obj]) -> None:
    charted = normalised_deployment(chart, NAMESPACE)
    based = normalised_deployment(base, "podtrail-system")
    assert charted == based
    # The comparison covers what matters: spot checks of the shipped values.
    pod = charted["template"]["spec"]
    assert charted["replicas"] == 2
    assert charted["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert pod["terminationGracePeriodSeconds"] == 40
    assert pod["containers"][0]["image"] == "ghcr.io/podtrail/podtrail:v0.1.0"
    assert pod["containers"][0]["env"]["settings"]["log_format"] == "json"


def test_services_and_budgets_match_the_base(chart: list[Obj], base: list[Obj]) -> None:
    for objects in (chart, base):
        pod_labels = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        selector = only(objects, "Deployment")["spec"]["selector"]["matchLabels"]
        assert only(objects, "Service")["spec"]["selector"] == selector
        assert only(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
        assert selector.items() <= pod_labels.items()

    def without_selector(obj: Obj) -> Obj:
        spec: Obj = copy.deepcopy(obj["spec"])
        spec.pop("selector")
        return spec

    for kind in ("Service", "PodDisruptionBudget"):
        assert without_selector(only(chart, kind)) == without_selector(only(base, kind)), kind
    assert (
        only(chart, "Service")["metadata"]["annotations"]
        == only(base, "Service")["metadata"]["annotations"]
    )


@pytest.mark.parametrize(
    "drift",
    [
        "grace period",
        "probe",
        "env",
        "resources",
        "strategy",
        "volume",
        "lease rule",
        "operator rule",
    ],
)
def test_the_comparison_sees_drift(chart: list[Obj], base: list[Obj], drift: str) -> None:
    """Changing any one of these on one side breaks the equality the two tests above assert."""
    drifted = copy.deepcopy(base)
    deployment = only(drifted, "Deployment")["spec"]
    pod = deployment["template"]["spec"]
    operator = pod["containers"][0]
    changes: dict[str, Callable[[], None]] = {
        "grace period": lambda: pod.update(terminationGracePeriodSeconds=30),
        "probe": lambda: operator["livenessProbe"].update(periodSeconds=5),
        "env": lambda: operator["env"].append({"name": "PODTRAIL_SWEEP_SECONDS", "value": "5"}),
        "resources": lambda: operator["resources"]["limits"].update(memory="2Gi"),
        "strategy": lambda: deployment["strategy"]["rollingUpdate"].update(maxUnavailable=1),
        "volume": lambda: pod["volumes"][0]["emptyDir"].update(sizeLimit="1Gi"),
        "lease rule": lambda: only(drifted, "Role")["rules"][1]["verbs"].append("delete"),
        "operator rule": lambda: operator_role(drifted)["rules"][0]["verbs"].append("delete"),
    }
    changes[drift]()
    same_deployment = normalised_deployment(chart, NAMESPACE) == normalised_deployment(
        drifted, "podtrail-system"
    )
    chart_lease = operator_settings(container(chart), NAMESPACE).lease_name
    same_rbac = rules(operator_role(chart)) == rules(operator_role(drifted)) and rules(
        only(chart, "Role"), chart_lease
    ) == rules(only(drifted, "Role"), "podtrail")
    assert not (same_deployment and same_rbac)


def test_values_reach_the_operator(everything: list[Obj]) -> None:
    operator = container(everything)
    settings = operator_settings(operator, NAMESPACE)
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.opt_in is True
    assert settings.retention_seconds == 604800
    assert settings.max_records_per_namespace == 500
    assert settings.max_records == 5000
    assert settings.timeline_entries == 300
    assert settings.message_length == 128
    assert settings.messages == "none"
    assert settings.previous_instances == 2
    assert settings.log_format == "console"
    assert settings.log_level == "debug"
    assert settings.leader_election is True
    assert settings.lease_name == "podtrail-lease"
    assert settings.lease_namespace == NAMESPACE
    assert settings.sweep_seconds == 30  # from extraEnv
    role = only(everything, "Role")
    assert ("coordination.k8s.io", "leases", "get", ("podtrail-lease",)) in rules(role)


def test_every_switch_on(everything: list[Obj]) -> None:
    deployment = only(everything, "Deployment")
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["replicas"] == 3
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["metadata"]["annotations"]["example.com/note"] == "chart test"
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    assert pod["spec"]["serviceAccountName"] == "tracker"
    account = only(everything, "ServiceAccount")
    assert account["metadata"]["name"] == "tracker"
    assert account["metadata"]["annotations"] == {"a": "b"}
    service = only(everything, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9191, "targetPort": "metrics", "protocol": "TCP"}
    ]

    monitor = only(everything, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"

    rule = only(everything, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    (group,) = rule["spec"]["groups"]
    alerts = [r["alert"] for r in group["rules"]]
    assert len(alerts) == len(set(alerts))
    assert alerts[-1] == "PodtrailExtra", "extraRules come last, as given"
    assert {
        "PodtrailLeaderAbsent",
        "PodtrailStreamDown",
        "PodtrailStreamRestarts",
        "PodtrailRecordWriteFailures",
    } <= set(alerts)


def exported_series() -> set[str]:
    """The series names the operator's /metrics shows (counters end in _total)."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


def test_alerts_use_metrics_the_operator_exports(everything: list[Obj]) -> None:
    exported = exported_series()
    assert "podtrail_leader" in exported and "podtrail_stream_restarts_total" in exported
    (group,) = only(everything, "PrometheusRule")["spec"]["groups"]
    selector = f'namespace="{NAMESPACE}",service="{FULLNAME}-metrics"'
    for rule in group["rules"]:
        if rule["alert"] == "PodtrailExtra":
            continue
        series = re.findall(r"\b(podtrail_[a-z_]+)\{([^}]*)\}", rule["expr"])
        assert series, rule["expr"]
        for name, matchers in series:
            assert name in exported, f"{rule['alert']} uses {name}, which the operator lacks"
            assert matchers.startswith(selector), f"{rule['alert']}: not scoped to the release"
        assert re.fullmatch(r"[0-9]+[smh]", rule["for"]), rule
        assert rule["labels"] == {"severity": "warning"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_monitoring_is_off_by_default(chart: list[Obj]) -> None:
    assert of_kind(chart, "ServiceMonitor") == []
    assert of_kind(chart, "PrometheusRule") == []


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({}, "ghcr.io/podtrail/podtrail:v0.1.0"),
        ({"image": {"tag": "v0.2.0"}}, "ghcr.io/podtrail/podtrail:v0.2.0"),
        ({"image": {"tag": "v0.2.0", "digest": DIGEST}}, f"ghcr.io/podtrail/podtrail@{DIGEST}"),
        ({"image": {"digest": DIGEST}}, f"ghcr.io/podtrail/podtrail@{DIGEST}"),
        (
            {"image": {"repository": "podtrail.local/podtrail", "tag": "dev"}},
            "podtrail.local/podtrail:dev",
        ),
    ],
)
def test_image_digest_wins_over_tag(helm: str, values: Obj, image: str) -> None:
    assert container(template(helm, values))["image"] == image


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": "two"},
        {"replicaCount": 0},
        {"operator": {"retentionSeconds": "1d"}},
        {"operator": {"retentionSeconds": -1}},
        {"operator": {"optIn": "yes"}},
        {"operator": {"namespaces": "team-a"}},
        {"operator": {"timelineEntries": MAX_TIMELINE_ENTRIES + 1}},
        {"operator": {"messageLength": MAX_MESSAGE_LENGTH + 1}},
        {"operator": {"previousInstances": MAX_PREVIOUS_INSTANCES + 1}},
        {"operator": {"messages": "all"}},
        {"operator": {"retention": 60}},  # a misspelt option is refused, not ignored
        {"image": {"digest": "sha256:abc"}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"metrics": {"serviceMonitor": {"enabled": "true"}}},
        {"extraEnv": [{"value": "no name"}]},
        {"resoures": {}},
    ],
)
def test_schema_refuses_wrong_values(helm: str, values: Obj) -> None:
    assert SCHEMA_REFUSAL in refusal(helm, values)


def test_schema_bounds_are_the_operators() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    options = schema["properties"]["operator"]["properties"]
    assert options["timelineEntries"]["maximum"] == MAX_TIMELINE_ENTRIES
    assert options["messageLength"]["maximum"] == MAX_MESSAGE_LENGTH
    assert options["previousInstances"]["maximum"] == MAX_PREVIOUS_INSTANCES
    assert set(options["messages"]["enum"]) == {"none", "first-line"}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values["operator"]) == set(options)
    defaults = PodtrailSettings()
    for option, field in {
        "retentionSeconds": "retention_seconds",
        "maxRecordsPerNamespace": "max_records_per_namespace",
        "maxRecords": "max_records",
        "timelineEntries": "timeline_entries",
        "messageLength": "message_length",
        "messages": "messages",
        "previousInstances": "previous_instances",
        "optIn": "opt_in",
        "logLevel": "log_level",
    }.items():
        assert values["operator"][option] == getattr(defaults, field), option


def test_leader_election_off_runs_one_replica(helm: str) -> None:
    objects = template(helm, {"leaderElection": {"enabled": False}, "replicaCount": 1})
    spec = only(objects, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert of_kind(objects, "Role") == [] and of_kind(objects, "RoleBinding") == []
    assert operator_settings(container(objects), NAMESPACE).leader_election is False
    message = refusal(helm, {"leaderElection": {"enabled": False}})
    assert "needs replicaCount=1" in message


def test_switches_remove_their_objects(helm: str) -> None:
    objects = template(
        helm,
        {
            "rbac": {"aggregateToDefaultRoles": False},
            "podDisruptionBudget": {"enabled": False},
            "metrics": {"service": {"enabled": False}},
            "serviceAccount": {"create": False, "name": "existing"},
        },
    )
    assert [r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")] == [
        f"{NAMESPACE}-{FULLNAME}"
    ]
    assert of_kind(objects, "PodDisruptionBudget") == []
    assert of_kind(objects, "Service") == []
    assert of_kind(objects, "ServiceAccount") == []
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing"
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    assert binding["subjects"][0]["name"] == "existing"
    message = refusal(
        helm,
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
    )
    assert "needs metrics.service.enabled" in message


@pytest.mark.parametrize("name", ["PODTRAIL_RETENTION_SECONDS", "POD_NAMESPACE"])
def test_extra_env_cannot_override_the_chart(helm: str, name: str) -> None:
    message = refusal(helm, {"extraEnv": [{"name": name, "value": "1"}]})
    assert f"extraEnv sets {name}" in message


def test_extra_env_cannot_move_the_ports(helm: str) -> None:
    message = refusal(helm, {"extraEnv": [{"name": "PODTRAIL_METRICS_PORT", "value": "9"}]})
    assert "8080 and 9090" in message


def test_two_releases_do_not_clash(helm: str) -> None:
    """Same release name in two namespaces, two releases in one: no object or Lease shared."""
    releases = [("podtrail", "team-a"), ("podtrail", "team-b"), ("other", "team-a")]
    cluster_names: list[tuple[str, str]] = []
    namespaced: list[tuple[str, str, str]] = []
    leases: list[tuple[str, str]] = []
    for release, namespace in releases:
        objects = template(helm, None, release, namespace)
        for obj in objects:
            meta = obj["metadata"]
            if "namespace" in meta:
                assert meta["namespace"] == namespace
                namespaced.append((obj["kind"], meta["namespace"], meta["name"]))
            else:
                cluster_names.append((obj["kind"], meta["name"]))
        leases.append((namespace, operator_settings(container(objects), namespace).lease_name))
    assert len(cluster_names) == len(set(cluster_names)), cluster_names
    assert len(namespaced) == len(set(namespaced)), namespaced
    assert len(leases) == len(set(leases)), leases
    # The release named after the chart keeps the short names of the base.
    assert ("Deployment", "team-a", "podtrail") in namespaced


def test_names_fit_kubernetes_limits(helm: str) -> None:
    longest = "r" * 53  # Helm's own bound on a release name
    objects = template(helm, None, longest, "n" * 63)
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= (63 if obj["kind"] == "Service" else 253), name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
        for value in (obj["metadata"].get("labels") or {}).values():
            assert len(value) <= 63, (name, value)


# Values whose content is passed on as a whole (documented as one row).
WHOLE_VALUES = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "nodeSelector",
    "metrics.service.annotations",
    "metrics.prometheusRule.alertLabels",
}


def value_paths(values: Obj, prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in WHOLE_VALUES:
            paths += value_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_docs_describe_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = re.findall(r"^\| `([^`]+)` \|", (REPO / "docs" / "helm.md").read_text(), re.M)
    paths = value_paths(values)
    assert [p for p in paths if p not in rows] == [], "values missing from docs/helm.md's table"
    assert [r for r in rows if r.startswith(tuple(values)) and r not in paths] == []


def test_otlp_values_reach_the_operator(helm: str) -> None:
    values = {
        "otlp": {
            "endpoint": "https://otel.example:4317",
            "headers": {"authorization": "Bearer a,b%c", "X-Team": "shop"},
            "certificate": {"secretName": "collector-ca"},
        }
    }
    objects = template(helm, values)
    operator = container(objects)
    settings = operator_settings(operator, NAMESPACE)
    assert settings.otlp_endpoint == "https://otel.example:4317"
    assert settings.otlp_protocol == "grpc" and settings.otlp_insecure is False
    assert settings.otlp_headers == ("X-Team=shop", "authorization=Bearer a,b%c")
    assert settings.otlp_certificate == "/etc/podtrail/otlp/ca.crt"
    mount = next(m for m in operator["volumeMounts"] if m["name"] == "otlp-certificate")
    assert mount == {
        "name": "otlp-certificate",
        "mountPath": "/etc/podtrail/otlp",
        "readOnly": True,
    }
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "otlp-certificate")
    assert volume["secret"] == {
        "secretName": "collector-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    http = operator_settings(
        container(template(helm, {"otlp": {"endpoint": "http://tempo:4318", "protocol": "http"}})),
        NAMESPACE,
    )
    assert (http.otlp_protocol, http.otlp_headers, http.otlp_certificate) == ("http", (), None)
    off = template(helm, {"otlp": {"headers": {"a": "b"}, "certificate": {"secretName": "x"}}})
    assert operator_settings(container(off), NAMESPACE).otlp_endpoint == ""
    assert "otlp-certificate" not in json.dumps(only(off, "Deployment"))


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (
            {"otlp": {"endpoint": "c:4317"}, "extraEnv": [{"name": "PODTRAIL_OTLP_ENDPOINT"}]},
            "extraEnv sets PODTRAIL_OTLP_ENDPOINT",
        ),
        (
            {"otlp": {"certificate": {"secretName": "a", "configMapName": "b"}}},
            "not both",
        ),
        (
            {"otlp": {"endpoint": "c:4317", "insecure": True, "certificate": {"secretName": "a"}}},
            "contradict",
        ),
        ({"otlp": {"protocol": "thrift"}}, SCHEMA_REFUSAL),
        ({"otlp": {"headers": {"bad key": "v"}}}, SCHEMA_REFUSAL),
    ],
)
def test_otlp_values_refused(helm: str, values: Obj, said: str) -> None:
    assert said in refusal(helm, values)
