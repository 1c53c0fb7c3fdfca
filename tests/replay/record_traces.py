"""Record the watch streams of real pod lifecycles into replay fixtures.

    .venv/bin/python -m tests.replay.record_traces [NAME...]

For each named lifecycle (all of them when none is named) the script creates a fresh namespace,
watches that namespace's pods, its core/v1 Events about pods (server-side field selector
``involvedObject.kind=Pod``) and its EndpointSlices, plays the lifecycle on the cluster, stops a
few seconds after the pod is gone (late Events), deletes the namespace and writes
``tests/replay/traces/<name>.jsonl``: one line per watch event, in arrival order,

    {"stream": "pods" | "events" | "endpointslices", "type": "ADDED" | ..., "object": {...}}

with every object exactly as the API sent it except ``metadata.managedFields``. The lifecycles
are recorded concurrently. The cluster is the one ``KUBECONFIG`` names, else the local one.
Only images already on the node are used; the image-pull failure names a loopback registry
port where nothing listens, so nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from tests.e2e.support import container, pod

TRACES = Path(__file__).resolve().parent / "traces"
LOCAL_KUBECONFIG = "/var/lib/podtrail/cluster/kubeconfig"
STREAMS = ("pods", "events", "endpointslices")
LATE_EVENTS_SECONDS = 5.0
LIFECYCLE_TIMEOUT = 240.0
WATCH_SECONDS = 600

Obj = dict[str, Any]

TRAP_TERM = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
IGNORE_TERM = "trap '' TERM; while true; do sleep 0.2; done"
HTTPD_TRAP = "trap 'exit 0' TERM; httpd -f -p 8080 -h /var/www & wait"


class RecordingError(RuntimeError):
    """A lifecycle could not be recorded as intended."""


async def _json(pending: Awaitable[Any]) -> Obj:
    response: aiohttp.ClientResponse = await pending
    try:
        payload = await response.read()
    finally:
        response.release()
    data = json.loads(payload) if payload else {}
    return data if isinstance(data, dict) else {}


def _strip(obj: Obj) -> Obj:
    """The object as sent, without the field-ownership bookkeeping."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


@dataclass
class Trace:
    """The watch events of one namespace, in arrival order, and the latest state of each object."""

    name: str
    namespace: str
    lines: list[Obj] = field(default_factory=list)
    pods: dict[str, Obj | None] = field(default_factory=dict)
    slices: dict[str, Obj | None] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, stream: str, kind: str, obj: Obj) -> None:
        self.lines.append({"stream": stream, "type": kind, "object": _strip(obj)})
        name = str((obj.get("metadata") or {}).get("name"))
        if stream == "pods":
            self.pods[name] = None if kind == "DELETED" else obj
        elif stream == "endpointslices":
            self.slices[name] = None if kind == "DELETED" else obj
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, check: Callable[[], bool], what: str, timeout: float = 90) -> None:
        """Wait until ``check()`` holds for what the watches have shown."""
        deadline = time.monotonic() + timeout
        async with self.changed:
            while not check():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RecordingError(f"{self.name}: timed out waiting for {what}")
                try:
                    await asyncio.wait_for(self.changed.wait(), left)
                except TimeoutError:
                    continue

    async def wait_pod(self, pod_name: str, check: Callable[[Obj], bool], what: str) -> None:
        def holds() -> bool:
            current = self.pods.get(pod_name)
            return current is not None and check(current)

        await self.wait(holds, f"{pod_name}: {what}")

    async def wait_gone(self, pod_name: str) -> None:
        def gone() -> bool:
            return pod_name in self.pods and self.pods[pod_name] is None

        await self.wait(gone, f"{pod_name} to be removed", timeout=120)


# --- predicates on pod objects ---------------------------------------------------------------


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def phase_is(*phases: str) -> Callable[[Obj], bool]:
    return lambda obj: _status(obj).get("phase") in phases


def condition_is(ctype: str, status: str) -> Callable[[Obj], bool]:
    return lambda obj: any(
        c.get("type") == ctype and c.get("status") == status
        for c in _status(obj).get("conditions") or []
    )


def is_ready(obj: Obj) -> bool:
    return condition_is("Ready", "True")(obj)


def waiting_reason(*reasons: str) -> Callable[[Obj], bool]:
    return lambda obj: any(
        ((s.get("state") or {}).get("waiting") or {}).get("reason") in reasons
        for s in _status(obj).get("containerStatuses") or []
    )


def restarted(obj: Obj) -> bool:
    return any(
        (s.get("restartCount") or 0) > 0 for s in _status(obj).get("containerStatuses") or []
    )


# --- the cluster side ------------------------------------------------------------------------


class Cluster:
    """The API calls the recording makes (plain dicts)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)

    async def create_namespace(self, lifecycle: str) -> str:
        name = f"replay-{lifecycle}-{secrets.token_hex(3)}"
        meta = {"name": name, "labels": {"podtrail.io/replay-recording": "true"}}
        await _json(self.core.create_namespace({"metadata": meta}, _preload_content=False))
        deadline = time.monotonic() + 60
        while True:  # pods can be created once the default ServiceAccount exists
            try:
                await _json(
                    self.core.read_namespaced_service_account(
                        "default", name, _preload_content=False
                    )
                )
                return name
            except ApiException as error:
                if error.status != 404 or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.3)

    async def delete_namespace(self, name: str) -> bool:
        """Delete a namespace; False when it was not there (any more)."""
        try:
            await _json(self.core.delete_namespace(name, _preload_content=False))
        except ApiException as error:
            if error.status != 404:
                raise
            return False
        return True

    async def create_pod(self, namespace: str, body: Obj) -> Obj:
        return await _json(self.core.create_namespaced_pod(namespace, body, _preload_content=False))

    async def create_service(self, namespace: str, body: Obj) -> Obj:
        return await _json(
            self.core.create_namespaced_service(namespace, body, _preload_content=False)
        )

    async def delete_pod(self, namespace: str, name: str, grace: int | None = None) -> None:
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        await _json(
            self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        )

    async def evict_pod(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        await _json(
            self.core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False)
        )

    def _lister(self, stream: str, namespace: str) -> Callable[..., Awaitable[Any]]:
        if stream == "pods":
            return lambda **kw: self.core.list_namespaced_pod(namespace, **kw)
        if stream == "events":
            return lambda **kw: self.core.list_namespaced_event(
                namespace, field_selector="involvedObject.kind=Pod", **kw
            )
        return lambda **kw: self.discovery.list_namespaced_endpoint_slice(namespace, **kw)

    async def start_watch(self, trace: Trace, stream: str) -> asyncio.Task[None]:
        """List (the namespace is new: nothing yet), then watch from that version in a task."""
        call = self._lister(stream, trace.namespace)
        listing = await _json(call(_preload_content=False))
        if listing.get("items"):
            raise RecordingError(f"{trace.name}: {stream} already present in a new namespace")
        version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
        return asyncio.create_task(self._watch(trace, stream, call, version))

    async def _watch(
        self, trace: Trace, stream: str, call: Callable[..., Awaitable[Any]], version: str
    ) -> None:
        failures = 0
        while True:
            try:
                response: aiohttp.ClientResponse = await call(
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS,
                    _preload_content=False,
                    _request_timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=10, sock_read=WATCH_SECONDS + 30
                    ),
                )
                try:
                    async for line in _lines(response):
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            raise RecordingError(f"{trace.name}: {stream} watch failed: {obj}")
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if kind in {"ADDED", "MODIFIED", "DELETED"}:
                            await trace.add(stream, kind, obj)
                        failures = 0
                finally:
                    response.release()
            except (aiohttp.ClientError, TimeoutError, ApiException) as error:
                failures += 1
                if failures > 20:
                    raise RecordingError(f"{trace.name}: {stream} watch lost: {error}") from error
                await asyncio.sleep(min(0.5 * failures, 5))


async def _lines(response: aiohttp.ClientResponse) -> Any:
    """The watch stream's lines, whatever their length."""
    buffer = b""
    async for chunk in response.content.iter_any():
        buffer += chunk
        while (cut := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:cut], buffer[cut + 1 :]
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


# --- the lifecycles --------------------------------------------------------------------------

Play = Callable[[Cluster, Trace], Awaitable[dict[str, int]]]
LIFECYCLES: dict[str, Play] = {}


def lifecycle(name: str) -> Callable[[Play], Play]:
    def register(play: Play) -> Play:
        LIFECYCLES[name] = play
        return play

    return register


async def _run_then_delete(
    cluster: Cluster,
    trace: Trace,
    body: Obj,
    until: Callable[[Obj], bool],
    what: str,
    *,
    hold: float = 1.0,
    grace: int | None = None,
) -> dict[str, int]:
    """Create a pod, wait for a state, keep it a moment, delete it.

    Returns:
        The pod's name and the grace period its deletion asked for.
    """
    name = body["metadata"]["name"]
    await cluster.create_pod(trace.namespace, body)
    await trace.wait_pod(name, until, what)
    await asyncio.sleep(hold)
    await cluster.delete_pod(trace.namespace, name, grace)
    return {name: _grace(body) if grace is None else grace}


def _grace(body: Obj) -> int:
    return int(body["spec"].get("terminationGracePeriodSeconds", 30))


@lifecycle("graceful")
async def graceful(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod("graceful", container("app", TRAP_TERM), grace=10)
    return await _run_then_delete(cluster, trace, body, is_ready, "Ready", hold=2)


@lifecycle("killed-after-grace")
async def killed_after_grace(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod("stubborn", container("app", IGNORE_TERM), grace=3)
    return await _run_then_delete(cluster, trace, body, is_ready, "Ready", hold=2)


@lifecycle("prestop-extension")
async def prestop_extension(cluster: Cluster, trace: Trace) -> dict[str, int]:
    hook = {"preStop": {"exec": {"command": ["sleep", "20"]}}}
    body = pod("slow-stop", container("app", IGNORE_TERM, lifecycle=hook), grace=3)
    return await _run_then_delete(cluster, trace, body, is_ready, "Ready", hold=2)


@lifecycle("oom")
async def oom(cluster: Cluster, trace: Trace) -> dict[str, int]:
    hog = container(
        "hog",
        "head -c 200m /dev/zero | tail",
        resources={"limits": {"memory": "24Mi"}, "requests": {"memory": "24Mi"}},
    )
    body = pod("hog", hog, restart="Never", grace=2)
    return await _run_then_delete(cluster, trace, body, phase_is("Failed", "Succeeded"), "an end")


@lifecycle("succeeded")
async def succeeded(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod("once", container("job", "echo hello; exit 0"), restart="Never", grace=2)
    return await _run_then_delete(cluster, trace, body, phase_is("Succeeded", "Failed"), "an end")


@lifecycle("failed")
async def failed(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod("broken", container("job", "echo failing; exit 3"), restart="Never", grace=2)
    return await _run_then_delete(cluster, trace, body, phase_is("Succeeded", "Failed"), "an end")


@lifecycle("init-retry")
async def init_retry(cluster: Cluster, trace: Trace) -> dict[str, int]:
    work = [{"name": "work", "mountPath": "/work"}]
    prepare = container(
        "prepare",
        "if [ -e /work/failed-once ]; then echo prepared; exit 0; fi; "
        "touch /work/failed-once; echo failing once; exit 1",
        volumeMounts=work,
    )
    body = pod(
        "initialised",
        container("app", TRAP_TERM, volumeMounts=work),
        init=[prepare],
        grace=5,
        volumes=[{"name": "work", "emptyDir": {}}],
    )
    return await _run_then_delete(cluster, trace, body, is_ready, "Ready")


@lifecycle("sidecar")
async def sidecar(cluster: Cluster, trace: Trace) -> dict[str, int]:
    proxy = container(
        "proxy",
        HTTPD_TRAP,
        restartPolicy="Always",
        readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    )
    body = pod("with-sidecar", container("app", TRAP_TERM), init=[proxy], grace=5)
    return await _run_then_delete(cluster, trace, body, is_ready, "Ready")


@lifecycle("probes")
async def probes(cluster: Cluster, trace: Trace) -> dict[str, int]:
    # Healthy at first; the first run only turns unhealthy after 4 s, so liveness restarts it
    # once (the emptyDir marker survives the restart, the container's /tmp does not).
    script = (
        "trap 'exit 0' TERM; httpd -p 8080 -h /var/www; touch /tmp/healthy; "
        "if [ ! -e /data/ran ]; then touch /data/ran; (sleep 4; rm -f /tmp/healthy) & fi; "
        "while true; do sleep 0.2; done"
    )
    app = container(
        "app",
        script,
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
        startupProbe={
            "httpGet": {"path": "/", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": 10,
        },
        readinessProbe={"exec": {"command": ["sh", "-c", "exit 1"]}, "periodSeconds": 2},
        livenessProbe={
            "exec": {"command": ["test", "-e", "/tmp/healthy"]},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
    )
    body = pod("probed", app, grace=3, volumes=[{"name": "data", "emptyDir": {}}])
    await cluster.create_pod(trace.namespace, body)
    started = time.monotonic()
    await trace.wait_pod("probed", restarted, "a liveness restart")
    await asyncio.sleep(max(3.0, 25 - (time.monotonic() - started)))
    await cluster.delete_pod(trace.namespace, "probed")
    return {"probed": _grace(body)}


@lifecycle("image-pull-failure")
async def image_pull_failure(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod("unpullable", container("app", TRAP_TERM, image="127.0.0.1:5999/none:1"), grace=2)
    await cluster.create_pod(trace.namespace, body)
    await trace.wait_pod("unpullable", waiting_reason("ImagePullBackOff"), "ImagePullBackOff")
    await asyncio.sleep(4)
    await cluster.delete_pod(trace.namespace, "unpullable")
    return {"unpullable": _grace(body)}


@lifecycle("unschedulable")
async def unschedulable(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod(
        "nowhere",
        container("app", TRAP_TERM),
        grace=5,
        nodeSelector={"podtrail.io/no-such-node": "true"},
    )
    return await _run_then_delete(
        cluster, trace, body, condition_is("PodScheduled", "False"), "FailedScheduling", hold=3
    )


@lifecycle("force-deleted")
async def force_deleted(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod("forced", container("app", IGNORE_TERM), grace=30)
    return await _run_then_delete(cluster, trace, body, is_ready, "Ready", hold=2, grace=0)


@lifecycle("evicted")
async def evicted(cluster: Cluster, trace: Trace) -> dict[str, int]:
    body = pod("evictee", container("app", TRAP_TERM), grace=5)
    await cluster.create_pod(trace.namespace, body)
    await trace.wait_pod("evictee", is_ready, "Ready")
    await asyncio.sleep(2)
    await cluster.evict_pod(trace.namespace, "evictee")
    return {"evictee": _grace(body)}


@lifecycle("service-endpoints")
async def service_endpoints(cluster: Cluster, trace: Trace) -> dict[str, int]:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }
    await cluster.create_service(trace.namespace, service)
    # On TERM the server keeps serving for 2 s, so the slice shows it terminating but serving.
    script = "trap 'sleep 2; exit 0' TERM; httpd -f -p 8080 -h /var/www & wait"
    web = container(
        "web",
        script,
        readinessProbe={"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
    )
    body = pod("web", web, grace=10, labels={"app": "web"})
    await cluster.create_pod(trace.namespace, body)
    await trace.wait_pod("web", is_ready, "Ready")

    def endpoint_ready() -> bool:
        return any(
            (endpoint.get("conditions") or {}).get("ready") is True
            for current in trace.slices.values()
            if current is not None
            for endpoint in current.get("endpoints") or []
        )

    await trace.wait(endpoint_ready, "a ready endpoint in the Service's EndpointSlice")
    await asyncio.sleep(2)
    await cluster.delete_pod(trace.namespace, "web")
    return {"web": _grace(body)}


# --- driving ---------------------------------------------------------------------------------


def _check_deletions(trace: Trace, graces: dict[str, int]) -> None:
    """Only the deletion the lifecycle asked for (then the kubelet's final grace-0 removal).

    Anything else (e.g. the cluster being taken down meanwhile) spoils the trace.
    """
    for pod_name, grace in graces.items():
        seen: list[int] = []
        for line in trace.lines:
            meta = line["object"].get("metadata") or {}
            value = meta.get("deletionGracePeriodSeconds")
            if line["stream"] == "pods" and meta.get("name") == pod_name and value is not None:
                if not seen or seen[-1] != value:
                    seen.append(value)
        if not seen or seen[0] not in (grace, 0) or seen[1:] not in ([], [0]):
            raise RecordingError(
                f"{trace.name}: {pod_name} deleted with grace {seen}, expected {grace} "
                "(then 0): another client deleted it"
            )


async def record(cluster: Cluster, name: str) -> Path:
    """Record one lifecycle and write its trace file."""
    namespace = await cluster.create_namespace(name)
    trace = Trace(name=name, namespace=namespace)
    watches: list[asyncio.Task[None]] = []
    try:
        for stream in STREAMS:
            watches.append(await cluster.start_watch(trace, stream))
        play = asyncio.ensure_future(LIFECYCLES[name](cluster, trace))
        await asyncio.wait({play, *watches}, return_when=asyncio.FIRST_COMPLETED)
        for task in watches:
            if task.done():
                task.result()  # a watch that gave up: its error
        graces = await asyncio.wait_for(play, LIFECYCLE_TIMEOUT)
        for pod_name in graces:
            await trace.wait_gone(pod_name)
        await asyncio.sleep(LATE_EVENTS_SECONDS)
    finally:
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        present = await cluster.delete_namespace(namespace)
    if not present:
        raise RecordingError(f"{name}: namespace {namespace} vanished: the cluster was restarted")
    _check_deletions(trace, graces)
    TRACES.mkdir(exist_ok=True)
    path = TRACES / f"{name}.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for line in trace.lines:
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(LIFECYCLES))
    args = parser.parse_args(argv)
    names = args.names or list(LIFECYCLES)
    unknown = [name for name in names if name not in LIFECYCLES]
    if unknown:
        parser.error(f"unknown lifecycle(s): {', '.join(unknown)}")
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=os.environ.get("KUBECONFIG") or LOCAL_KUBECONFIG,
        client_configuration=configuration,
    )
    async with client.ApiClient(configuration) as api:
        cluster = Cluster(api)
        results = await asyncio.gather(
            *(record(cluster, name) for name in names), return_exceptions=True
        )
    failed = 0
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            failed += 1
            print(f"{name}: FAILED: {type(result).__name__}: {result}", file=sys.stderr)
        else:
            lines = sum(1 for _ in result.open(encoding="utf-8"))
            print(f"{name}: {result} ({lines} lines, {result.stat().st_size} bytes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
