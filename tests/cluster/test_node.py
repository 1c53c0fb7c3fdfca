"""What a real kubelet does to real containers, seen through the API as a user's pods see it.

Every scenario runs in a namespace of its own and they all run at once: the module fixture
starts them as tasks, and each test awaits its own scenario's observations and asserts on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.cluster.conftest import TESTBOX_IMAGE
from tests.support.kube import (
    Kube,
    container_status,
    container_terminated,
    pod_phase,
    pod_ready,
    restarted,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet, pytest.mark.timeout(300)]

KEEP = "podtrail.io/test-keep"  # a finalizer that keeps a deleted pod readable until removed
TRAP_TERM = "trap 'echo got TERM; exit 0' TERM; while true; do sleep 0.2; done"
IGNORE_TERM = "while true; do sleep 1; done"  # a PID-1 shell without a trap ignores TERM
HTTPD = "exec httpd -f -p 8080 -h /var/www"


def box(name: str, script: str, **extra: Any) -> dict[str, Any]:
    """A container of the test image running a shell script."""
    return {
        "name": name,
        "image": TESTBOX_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        **extra,
    }


def pod(
    name: str,
    containers: list[dict[str, Any]],
    *,
    grace: int = 2,
    restart: str = "Always",
    init: list[dict[str, Any]] | None = None,
    keep: bool = False,
    labels: dict[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pod manifest."""
    metadata: dict[str, Any] = {"name": name, "labels": labels or {"app": name}}
    if keep:
        metadata["finalizers"] = [KEEP]
    spec: dict[str, Any] = {
        "containers": containers,
        "restartPolicy": restart,
        "terminationGracePeriodSeconds": grace,
    }
    if init:
        spec["initContainers"] = init
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def running(name: str) -> Callable[[client.V1Pod], bool]:
    """A predicate: the container is running."""

    def check(p: client.V1Pod) -> bool:
        status = container_status(p, name)
        return bool(status and status.state and status.state.running)

    return check


def reasons(events: list[client.CoreV1Event]) -> list[tuple[str, str]]:
    """(reason, message) of each event."""
    return [(e.reason or "", e.message or "") for e in events]


# --- scenarios: each returns what its test asserts on -------------------------------------


async def _delete_and_observe(kube: Kube, prefix: str, script: str, grace: int) -> dict[str, Any]:
    async with kube.namespace(prefix) as ns:
        await kube.apply(pod("victim", [box("app", script)], grace=grace, keep=True), ns)
        try:
            await kube.wait_pod(ns, "victim", running("app"), timeout=90, what="app running")
            await asyncio.sleep(1)  # the shell has set its trap
            await kube.delete_pod(ns, "victim")
            marked = await kube.read_pod(ns, "victim")
            final = await kube.wait_pod(
                ns, "victim", container_terminated("app"), timeout=grace + 60, what="app ended"
            )
            events = await kube.pod_events(ns, "victim")
        finally:
            await kube.remove_finalizers(ns, "victim")
        deadline: datetime = marked.metadata.deletion_timestamp
        return {
            "grace": grace,
            "deadline": deadline,
            "requested": deadline
            - timedelta(seconds=marked.metadata.deletion_grace_period_seconds),
            "started": container_status(marked, "app").state.running.started_at,
            "terminated": container_status(final, "app").state.terminated,
            "phase": final.status.phase,
            "events": reasons(events),
        }


async def term_trapped(kube: Kube) -> dict[str, Any]:
    return await _delete_and_observe(kube, "term-trap", TRAP_TERM, grace=30)


async def term_ignored(kube: Kube) -> dict[str, Any]:
    return await _delete_and_observe(kube, "term-ignore", IGNORE_TERM, grace=8)


async def init_order(kube: Kube) -> dict[str, Any]:
    async with kube.namespace("init-order") as ns:
        work = {"name": "work", "mountPath": "/work"}
        init = [
            box("first", "echo first >> /work/order", volumeMounts=[work]),
            box(
                "second",
                "if [ -e /work/failed-once ]; then echo second >> /work/order; "
                "else touch /work/failed-once; echo failing once; exit 3; fi",
                volumeMounts=[work],
            ),
        ]
        main = box("main", f"cat /work/order; {TRAP_TERM}", volumeMounts=[work])
        body = pod("ordered", [main], init=init, volumes=[{"name": "work", "emptyDir": {}}])
        await kube.apply(body, ns)
        final = await kube.wait_pod(
            ns, "ordered", running("main"), timeout=120, what="main running"
        )
        await asyncio.sleep(1)
        return {
            "pod": final,
            "log": await kube.pod_log(ns, "ordered", "main"),
            "events": reasons(await kube.pod_events(ns, "ordered")),
        }


async def probes(kube: Kube) -> dict[str, Any]:
    fast = {"periodSeconds": 1, "failureThreshold": 2, "timeoutSeconds": 1}
    specs = {
        "ready-fails": box(
            "app",
            TRAP_TERM,
            readinessProbe={"exec": {"command": ["sh", "-c", "exit 1"]}, **fast},
        ),
        "live-fails": box("app", TRAP_TERM, livenessProbe={"tcpSocket": {"port": 9}, **fast}),
        "startup-fails": box(
            "app",
            HTTPD,
            startupProbe={"httpGet": {"path": "/missing", "port": 8080}, **fast},
        ),
        "all-pass": box(
            "app",
            HTTPD,
            startupProbe={"exec": {"command": ["test", "-f", "/var/www/index.html"]}, **fast},
            livenessProbe={"tcpSocket": {"port": 8080}, **fast},
            readinessProbe={"httpGet": {"path": "/", "port": 8080}, **fast},
        ),
    }
    async with kube.namespace("probes") as ns:
        await asyncio.gather(*(kube.apply(pod(n, [c]), ns) for n, c in specs.items()))

        async def unhealthy_events() -> list[tuple[str, str]] | None:
            found = [
                r for r in reasons(await kube.pod_events(ns, "ready-fails")) if r[0] == "Unhealthy"
            ]
            return found or None

        ready_fails, live_fails, startup_fails, all_pass = await asyncio.gather(
            wait_for(unhealthy_events, timeout=90, what="Unhealthy events of ready-fails"),
            kube.wait_pod(ns, "live-fails", restarted("app"), timeout=120, what="a restart"),
            kube.wait_pod(ns, "startup-fails", restarted("app"), timeout=120, what="a restart"),
            kube.wait_pod(ns, "all-pass", pod_ready, timeout=90, what="Ready"),
        )
        await asyncio.sleep(4)  # passing probes keep passing: no restart, still Ready
        return {
            "ready-fails": {
                "events": ready_fails,
                "pod": await kube.read_pod(ns, "ready-fails"),
            },
            "live-fails": {
                "pod": live_fails,
                "events": reasons(await kube.pod_events(ns, "live-fails")),
            },
            "startup-fails": {
                "pod": startup_fails,
                "events": reasons(await kube.pod_events(ns, "startup-fails")),
            },
            "all-pass": {"pod": await kube.read_pod(ns, "all-pass"), "first": all_pass},
        }


async def oom(kube: Kube) -> dict[str, Any]:
    async with kube.namespace("oom") as ns:
        hog = box(
            "hog",
            # After a pause: containerd watches the cgroup for OOM events once the task runs.
            "sleep 2; exec dd if=/dev/zero of=/dev/null bs=256M count=1",
            resources={"limits": {"memory": "32Mi"}, "requests": {"memory": "32Mi"}},
        )
        await kube.apply(pod("hog", [hog], restart="Never"), ns)
        final = await kube.wait_pod(
            ns, "hog", pod_phase("Failed", "Succeeded"), timeout=90, what="killed"
        )
        return {"pod": final, "terminated": container_status(final, "hog").state.terminated}


CLIENT = """
seen=""
for i in $(seq 1 120); do
  body=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 "$TARGET" 80 | tail -n 1)
  if [ -n "$body" ]; then
    case " $seen " in *" $body "*) ;; *) seen="$seen $body"; echo "seen $body";; esac
  fi
  [ "$(echo $seen | wc -w)" -ge "$WANT" ] && exit 0
  sleep 0.5
done
echo "only saw:$seen"
exit 1
"""


async def service_routing(kube: Kube) -> dict[str, Any]:
    async with kube.namespace("svc") as ns:
        labels = {"app": "web"}
        web = box(
            "web",
            f"hostname > /var/www/index.html; {HTTPD}",
            readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        )
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [web], "terminationGracePeriodSeconds": 2},
                },
            },
        }
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        }
        await kube.apply(deployment, ns)
        await kube.apply(service, ns)
        svc = await kube.core.read_namespaced_service("web", ns)

        async def available() -> bool:
            d = await kube.apps.read_namespaced_deployment("web", ns)
            return (d.status.available_replicas or 0) == 2

        await wait_for(available, timeout=120, what="deployment web with 2 available replicas")
        web_pods = await kube.core.list_namespaced_pod(ns, label_selector="app=web")

        clients = {
            "by-ip": svc.spec.cluster_ip,
            "by-name": "web",  # the cluster DNS, through the pod's search path
        }
        for name, target in clients.items():
            env = [{"name": "TARGET", "value": target}, {"name": "WANT", "value": "2"}]
            await kube.apply(pod(name, [box("client", CLIENT, env=env)], restart="Never"), ns)
        finals = await asyncio.gather(
            *(
                kube.wait_pod(ns, n, pod_phase("Succeeded", "Failed"), timeout=120, what="done")
                for n in clients
            )
        )
        return {
            "service_ip": svc.spec.cluster_ip,
            "pods": sorted(p.metadata.name for p in web_pods.items),
            "clients": {
                n: {
                    "phase": f.status.phase,
                    "log": await kube.pod_log(ns, n),
                    "events": reasons(await kube.pod_events(ns, n)),
                }
                for n, f in zip(clients, finals, strict=True)
            },
        }


# A TLS client from busybox alone: nc connects and runs a shell with the socket as its stdin;
# ssl_client speaks TLS over that socket (fd 3), the request on fd 4 and the answer to fd 5.
APISERVER_CLIENT = r"""
TOKEN=$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)
request() {
  printf 'GET %s HTTP/1.1\r\nHost: kubernetes.default.svc\r\n' "$1"
  printf 'Authorization: Bearer %s\r\nConnection: close\r\n\r\n' "$TOKEN"
  sleep 3
}
TLS='exec 3<&0; ssl_client -s 3 -n kubernetes.default.svc <&4 >&5'
for i in $(seq 1 20); do
  out=$(request "/api/v1/namespaces/$NS/pods/$POD" |
    nc -w 3 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" -e sh -c "$TLS" 4<&0 5>&1)
  echo "$out" | head -n 1
  case "$out" in
    *'"kind":"Pod"'*) echo "read own pod through $KUBERNETES_SERVICE_HOST"; exit 0;;
  esac
  sleep 1
done
exit 1
"""


async def apiserver_via_service(kube: Kube) -> dict[str, Any]:
    async with kube.namespace("apisvc") as ns:
        reader = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "pod-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
        }
        await kube.apply(reader, ns)
        await kube.apply(binding, ns)
        env = [
            {"name": "NS", "value": ns},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ]
        await kube.apply(
            pod("caller", [box("caller", APISERVER_CLIENT, env=env)], restart="Never"), ns
        )
        final = await kube.wait_pod(
            ns, "caller", pod_phase("Succeeded", "Failed"), timeout=120, what="done"
        )
        kubernetes = await kube.core.read_namespaced_service("kubernetes", "default")
        return {
            "phase": final.status.phase,
            "log": await kube.pod_log(ns, "caller"),
            "kubernetes_ip": kubernetes.spec.cluster_ip,
        }


SCENARIOS: dict[str, Callable[[Kube], Awaitable[dict[str, Any]]]] = {
    "term_trapped": term_trapped,
    "term_ignored": term_ignored,
    "init_order": init_order,
    "probes": probes,
    "oom": oom,
    "service_routing": service_routing,
    "apiserver_via_service": apiserver_via_service,
}


@pytest.fixture(scope="module")
async def scenarios(kube: Kube) -> AsyncIterator[dict[str, asyncio.Task[dict[str, Any]]]]:
    """Every scenario started at once; each test awaits its own."""
    tasks = {name: asyncio.create_task(fn(kube), name=name) for name, fn in SCENARIOS.items()}
    try:
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


async def outcome(scenarios: dict[str, asyncio.Task[dict[str, Any]]], name: str) -> dict[str, Any]:
    return await asyncio.wait_for(asyncio.shield(scenarios[name]), timeout=280)


# --- tests ---------------------------------------------------------------------------------


async def test_term_trapping_container_exits_zero_well_before_its_deadline(scenarios):
    r = await outcome(scenarios, "term_trapped")
    ended = r["terminated"]
    assert ended.exit_code == 0, ended
    assert r["started"] <= r["requested"]
    # TERM at the request, exit within a few seconds: far from the 30 s deadline.
    assert ended.finished_at - r["requested"] <= timedelta(seconds=5), (ended, r["requested"])
    assert r["deadline"] - ended.finished_at >= timedelta(seconds=20)
    assert r["phase"] == "Succeeded"
    assert any(reason == "Killing" for reason, _ in r["events"]), r["events"]


async def test_term_ignoring_container_is_killed_with_137_at_its_deadline(scenarios):
    r = await outcome(scenarios, "term_ignored")
    ended = r["terminated"]
    assert ended.exit_code == 137, ended
    # Times are whole seconds: the KILL comes at request + grace (8 s), not before, not much after.
    assert ended.finished_at >= r["deadline"] - timedelta(seconds=1), (ended, r["deadline"])
    assert ended.finished_at <= r["deadline"] + timedelta(seconds=4), (ended, r["deadline"])
    assert ended.finished_at - r["requested"] >= timedelta(seconds=r["grace"] - 1)
    assert r["phase"] == "Failed"


async def test_init_containers_run_in_order_and_a_failing_one_is_retried(scenarios):
    r = await outcome(scenarios, "init_order")
    p = r["pod"]
    first = container_status(p, "first", init=True)
    second = container_status(p, "second", init=True)
    main = container_status(p, "main")
    assert first.state.terminated.exit_code == 0
    assert second.state.terminated.exit_code == 0
    assert second.restart_count >= 1, second
    # It failed once (exit 3) and its retry wrote the file: the log shows one line per success.
    assert first.state.terminated.finished_at <= second.state.terminated.started_at
    assert second.state.terminated.finished_at <= main.state.running.started_at
    assert r["log"].split() == ["first", "second"], r["log"]


async def test_failing_readiness_probe_yields_unhealthy_events(scenarios):
    r = (await outcome(scenarios, "probes"))["ready-fails"]
    assert any("Readiness probe failed" in message for _, message in r["events"]), r["events"]
    assert not pod_ready(r["pod"])
    assert container_status(r["pod"], "app").restart_count == 0


async def test_failing_liveness_probe_restarts_the_container(scenarios):
    r = (await outcome(scenarios, "probes"))["live-fails"]
    status = container_status(r["pod"], "app")
    assert status.restart_count >= 1
    assert any("Liveness probe failed" in message for _, message in r["events"]), r["events"]


async def test_failing_startup_probe_restarts_the_container(scenarios):
    r = (await outcome(scenarios, "probes"))["startup-fails"]
    status = container_status(r["pod"], "app")
    assert status.restart_count >= 1
    assert any("Startup probe failed" in message for _, message in r["events"]), r["events"]


async def test_passing_exec_tcp_and_http_probes_make_the_pod_ready(scenarios):
    r = (await outcome(scenarios, "probes"))["all-pass"]
    assert pod_ready(r["pod"])
    assert container_status(r["pod"], "app").restart_count == 0


async def test_memory_hog_is_oom_killed(scenarios):
    r = await outcome(scenarios, "oom")
    assert r["terminated"].exit_code == 137, r["terminated"]
    assert r["terminated"].reason == "OOMKilled", r["terminated"]
    assert r["pod"].status.phase == "Failed"


async def test_service_routes_to_every_pod_of_a_deployment(scenarios):
    r = await outcome(scenarios, "service_routing")
    by_ip = r["clients"]["by-ip"]
    assert by_ip["phase"] == "Succeeded", by_ip["log"]
    seen = sorted(line.split()[1] for line in by_ip["log"].splitlines() if line.startswith("seen "))
    assert seen == r["pods"], (by_ip["log"], r["pods"])


async def test_service_name_resolves_through_cluster_dns(scenarios):
    r = await outcome(scenarios, "service_routing")
    by_name = r["clients"]["by-name"]
    assert by_name["phase"] == "Succeeded", by_name["log"]
    assert not any(reason == "MissingClusterDNS" for reason, _ in by_name["events"]), by_name


async def test_pod_reaches_the_apiserver_through_the_kubernetes_service(scenarios):
    r = await outcome(scenarios, "apiserver_via_service")
    assert r["phase"] == "Succeeded", r["log"]
    assert f"read own pod through {r['kubernetes_ip']}" in r["log"], r["log"]
