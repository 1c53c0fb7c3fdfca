"""What the fault scenarios share: namespaces, scoped operators, records, figures, the apiserver.

Each scenario gets its own namespaces and its own operator process (scoped with --namespace,
its own health/metrics ports and lease), so scenarios that only wait on Kubernetes run side by
side. Every scenario returns its figures; they are written to out/faults/ and printed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException
from tests.support.kube import Kube, wait_for
from tests.support.operator import REPO, OperatorProcess, operator_flags

FAULT_ENV = "PODTRAIL_FAULT_TESTS"
KEEP_ENV = "PODTRAIL_FAULTS_KEEP"
OUT_DIR = REPO / "out" / "faults"
GROUP, VERSION, PLURAL = "podtrail.io", "v1alpha1", "podlifecyclerecords"
RECORD_BUDGET_BYTES = 256 * 1024  # the spec's aim for any record

Obj = dict[str, Any]

_ports = itertools.count(18_300, 2)  # each operator takes two: health, metrics

FIGURES: dict[str, dict[str, Any]] = {}


def record_figures(scenario: str, figures: Mapping[str, Any]) -> None:
    """Keep a scenario's measured figures and rewrite the summary files."""
    FIGURES[scenario] = dict(figures)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "figures.json").write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
    (OUT_DIR / "figures.md").write_text(figures_markdown())


def figures_markdown() -> str:
    """The figures as one markdown table per scenario."""
    lines = ["# Fault suite figures", ""]
    for scenario, figures in sorted(FIGURES.items()):
        lines += [f"## {scenario}", "", "| figure | value |", "| --- | --- |"]
        lines += [f"| {name} | {_show(value)} |" for name, value in figures.items()]
        lines.append("")
    return "\n".join(lines)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def optional_flags(*pairs: tuple[str, str | None]) -> list[str]:
    """Options the working tree's operator accepts (features land over time): the rest left out."""
    known = operator_flags()
    args: list[str] = []
    for flag, value in pairs:
        if flag in known:
            args += [flag] if value is None else [flag, value]
    return args


class FaultHarness:
    """What a scenario gets: the API, namespaces it owns, operators scoped to them."""

    def __init__(self, kube: Kube, kubeconfig: str, log_dir: Path, kubectl: str) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl
        self.log_dir = log_dir
        self.custom = client.CustomObjectsApi(kube.api)
        self.namespaces: list[str] = []
        self.operators: list[OperatorProcess] = []
        self.cleanups: list[Callable[[], Awaitable[None]]] = []

    async def namespace(self, prefix: str, labels: Mapping[str, str] | None = None) -> str:
        """A fresh namespace, deleted when the session ends."""
        name = await self.kube.create_namespace(f"fault-{prefix}", dict(labels or {}))
        self.namespaces.append(name)
        return name

    def operator(
        self,
        name: str,
        namespaces: Iterable[str],
        *extra: str,
        kubeconfig: str | None = None,
        lease: bool = True,
    ) -> OperatorProcess:
        """An operator scoped to `namespaces`, on ports of its own, with a lease of its own.

        With `lease=False` it runs without leader election (when the operator has the option).
        `start()` returns once it leads.
        """
        scope = list(namespaces)
        health = next(_ports)
        args = list(extra)
        if not lease:
            args += optional_flags(("--no-leader-election", None))
        else:
            args += optional_flags(
                ("--lease-name", f"podtrail-{name}"), ("--lease-namespace", scope[0])
            )
        process = OperatorProcess(
            kubeconfig or self.kubeconfig,
            self.log_dir,
            name=name,
            namespaces=scope,
            health_port=health,
            metrics_port=health + 1,
            extra_args=args,
            until_leading=True,
        )
        self.operators.append(process)
        return process

    def kubectl_run(self, *args: str) -> str:
        """kubectl against the cluster (admin); its output. Raises when it fails."""
        done = subprocess.run(
            [self.kubectl, "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    async def clean_up(self) -> None:
        """Stop the operators; delete the namespaces (unless PODTRAIL_FAULTS_KEEP=1)."""
        for operator in self.operators:
            with contextlib.suppress(Exception):
                await operator.stop()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                await cleanup()
        if os.environ.get(KEEP_ENV) == "1":
            return
        for name in self.namespaces:
            with contextlib.suppress(Exception):
                await self.kube.delete_namespace(name)

    # --- objects as plain dicts ---------------------------------------------------------------

    def plain(self, obj: Any) -> Obj:
        """A client model as the API's JSON (camelCase keys)."""
        data: Obj = self.kube.api.sanitize_for_serialization(obj)
        return data

    async def create_pod(self, namespace: str, body: Obj) -> Obj:
        return self.plain(await self.kube.core.create_namespaced_pod(namespace, body))

    async def pod(self, namespace: str, name: str) -> Obj | None:
        try:
            return self.plain(await self.kube.core.read_namespaced_pod(name, namespace))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def pods(self, namespace: str) -> list[Obj]:
        listing = await self.kube.core.list_namespaced_pod(namespace)
        return [self.plain(item) for item in listing.items]

    async def record(self, namespace: str, name: str) -> Obj | None:
        try:
            found: Obj = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    async def records(self, namespace: str) -> list[Obj]:
        """Every record of a namespace, a page at a time."""
        items: list[Obj] = []
        token = ""
        while True:
            page = await self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, limit=500, _continue=token
            )
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    async def record_count(self, namespace: str) -> int:
        """How many records a namespace holds (metadata pages only)."""
        count, token = 0, ""
        while True:
            page = await self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, limit=5000, _continue=token
            )
            count += len(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return count

    async def wait_record(
        self,
        namespace: str,
        name: str,
        condition: Callable[[Obj], bool],
        *,
        timeout: float = 90,
        what: str = "the record to match",
        interval: float = 0.5,
    ) -> Obj:
        last: list[Obj | None] = [None]

        async def probe() -> Obj | None:
            found = await self.record(namespace, name)
            last[0] = found
            return found if found is not None and condition(found) else None

        async def shown() -> str:
            return describe(last[0])

        return await wait_for(
            probe,
            timeout=timeout,
            what=f"record {namespace}/{name}: {what}",
            interval=interval,
            describe=shown,
        )


# --- reading records -----------------------------------------------------------------------------


def status_of(obj: Obj | None) -> Obj:
    status: Obj = (obj or {}).get("status") or {}
    return status


def timeline(record: Obj) -> list[Obj]:
    return list(status_of(record).get("timeline") or [])


def entries(record: Obj, kind: str, container_name: str | None = None) -> list[Obj]:
    return [
        e
        for e in timeline(record)
        if e.get("type") == kind
        and (container_name is None or e.get("container") == container_name)
    ]


def duplicate_keys(record: Obj) -> list[str]:
    """Timeline keys that occur more than once (each fact must be recorded once)."""
    tracking = (record.get("status") or {}).get("tracking") or {}
    keys = Counter(str(k) for k in tracking.get("timelineKeys") or [])
    return sorted(key for key, count in keys.items() if count > 1)


def record_bytes(record: Obj) -> int:
    """The record's size as JSON, as etcd stores it (near enough)."""
    return len(json.dumps(record, separators=(",", ":")).encode())


def describe(record: Obj | None) -> str:
    """A record's timeline as lines, for failure messages."""
    if record is None:
        return "<no record>"
    status = status_of(record)
    lines = [f"outcome={status.get('outcome')} phase={status.get('phase')}"]
    lines += [
        f"  {e.get('time')} {e.get('type')} [{e.get('container', '')}] {e.get('summary')}"
        for e in timeline(record)
    ]
    return "\n".join(lines[:80])


# --- a pod watch kept by the test itself ---------------------------------------------------------


class PodWatch:
    """Every pod of a namespace as last seen, including the final state of deleted pods.

    The DELETED event carries the pod's last status (exit codes after the kill), which a poll
    could miss. A dropped watch resumes from its last version, or relists after 410 Gone.
    """

    def __init__(self, harness: FaultHarness, namespace: str) -> None:
        self.harness = harness
        self.namespace = namespace
        self.last: dict[str, Obj] = {}
        self.removed_at: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"podwatch-{self.namespace}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        version = ""
        while True:
            try:
                if not version:
                    version = await self._list()
                version = await self._follow(version)
            except ApiException as error:
                if error.status != 410:
                    await asyncio.sleep(1)
                version = "" if error.status == 410 else version
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                await asyncio.sleep(1)

    async def _list(self) -> str:
        listing = await self.harness.kube.core.list_namespaced_pod(self.namespace)
        for item in listing.items:
            self.last[item.metadata.name] = self.harness.plain(item)
        return str(listing.metadata.resource_version)

    async def _follow(self, version: str) -> str:
        stream = watch.Watch()
        async with stream.stream(
            self.harness.kube.core.list_namespaced_pod,
            self.namespace,
            resource_version=version,
            timeout_seconds=120,
            allow_watch_bookmarks=True,
        ) as events:
            async for event in events:
                raw: Obj = event["raw_object"]  # an ERROR event (410) raises in the client
                version = str((raw.get("metadata") or {}).get("resourceVersion") or version)
                if event["type"] == "BOOKMARK":
                    continue
                name = str(raw["metadata"]["name"])
                self.last[name] = raw
                if event["type"] == "DELETED":
                    self.removed_at[name] = time.monotonic()
        return version


# --- the API server of the local cluster ---------------------------------------------------------

CLUSTER_DIR = Path(os.environ.get("PODTRAIL_CLUSTER_DIR", "/var/lib/podtrail/cluster"))


class ApiServer:
    """The local cluster's kube-apiserver process: stopped, frozen and started again.

    Started again with the very command line up.sh gave it, its PID in up.sh's PID file, so
    cluster/up.sh and down.sh keep managing it.
    """

    def __init__(self, kubectl: str, kubeconfig: str) -> None:
        self.kubectl = kubectl
        self.kubeconfig = kubeconfig
        self.pid_file = CLUSTER_DIR / "run" / "kube-apiserver.pid"
        self.log_file = CLUSTER_DIR / "logs" / "kube-apiserver.log"
        self.pid = int(self.pid_file.read_text().strip())
        raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        self.command = [part.decode() for part in raw.split(b"\0") if part]
        self.frozen = False

    def alive(self) -> bool:
        return Path(f"/proc/{self.pid}").exists() and not _zombie(self.pid)

    async def stop(self, wait: float = 20) -> None:
        """SIGTERM, SIGKILL if it is still there after `wait` seconds."""
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while self.alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        while self.alive():
            await asyncio.sleep(0.1)

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.frozen = False

    def start(self) -> None:
        """The same command line, detached as up.sh starts it (not our child), same log file."""
        with open(self.log_file, "ab") as log:
            log.write(f"\n===== fault suite restarts kube-apiserver at {time.ctime()}\n".encode())
        # A shell starts it in the background and exits: the server outlives the test process.
        started = subprocess.run(
            ["sh", "-c", 'setsid "$@" </dev/null >>"$APISERVER_LOG" 2>&1 & echo $!', "sh"]
            + self.command,
            env={**os.environ, "APISERVER_LOG": str(self.log_file)},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        self.pid = int(started.stdout.strip())
        self.pid_file.write_text(f"{self.pid}\n")

    async def ready(self) -> bool:
        """/readyz answers ok (a 2 s bound)."""
        proc = await asyncio.create_subprocess_exec(
            self.kubectl,
            "--kubeconfig",
            self.kubeconfig,
            "get",
            "--raw=/readyz",
            "--request-timeout=2s",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return False
        return proc.returncode == 0 and out.strip() == b"ok"

    async def wait_ready(self, timeout: float = 120) -> float:
        """Wait for /readyz ok; returns the monotonic time it first answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.ready():
                return time.monotonic()
            await asyncio.sleep(0.2)
        raise AssertionError(f"kube-apiserver not ready {timeout:g} s after its restart")

    async def ensure_running(self) -> None:
        """Whatever happened: thawed, running, ready (the cluster must be healthy afterwards)."""
        if self.frozen:
            self.thaw()
        if not self.alive():
            self.start()
        await self.wait_ready()


ETCD_URL = "http://127.0.0.1:2379"  # the local cluster's etcd: plain HTTP on loopback only


async def compact_etcd() -> int:
    """Compact etcd's history up to its current revision; returns that revision.

    What the API server itself does every 5 minutes, done now: a watch resumed from an older
    version then meets 410 Gone, also where no watch cache stands in front of etcd (Events).
    """
    limits = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=limits, trust_env=False) as session:
        # Any key will do: the answer's header carries the store's current revision.
        async with session.post(f"{ETCD_URL}/v3/kv/range", json={"key": "YQ==", "limit": 1}) as got:
            got.raise_for_status()
            revision = int((await got.json())["header"]["revision"])
        body = {"revision": str(revision), "physical": True}
        async with session.post(f"{ETCD_URL}/v3/kv/compaction", json=body) as done:
            done.raise_for_status()
    return revision


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return False
