"""What the fault scenarios share: namespaces, scoped operators, records, figures, the apiserver.

Each scenario gets its own namespaces and its own operator process (scoped with --namespace,
its own health/metrics ports and lease), so scenarios that only wait on Kubernetes run side by
side. Every scenario returns its figures; they are written to out/faults/ and printed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.cluster import run_kubectl
from tests.support.kube import Kube
from tests.support.operator import REPO, OperatorProcess, operator_flags
from tests.support.records import GROUP as GROUP
from tests.support.records import PLURAL as PLURAL
from tests.support.records import RECORD_BUDGET_BYTES as RECORD_BUDGET_BYTES
from tests.support.records import VERSION as VERSION
from tests.support.records import Obj as Obj
from tests.support.records import describe as describe
from tests.support.records import duplicate_keys as duplicate_keys
from tests.support.records import entries as entries
from tests.support.records import record_bytes as record_bytes
from tests.support.records import status_of as status_of
from tests.support.records import timeline as timeline
from tests.support.scenarios import ScenarioHarness

FAULT_ENV = "PODTRAIL_FAULT_TESTS"
KEEP_ENV = "PODTRAIL_FAULTS_KEEP"
OUT_DIR = REPO / "out" / "faults"

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


class FaultHarness(ScenarioHarness):
    """What a scenario gets: the API, namespaces it owns, operators scoped to them."""

    def __init__(self, kube: Kube, kubeconfig: str, log_dir: Path, kubectl: str) -> None:
        super().__init__(kube, prefix="fault", keep_env=KEEP_ENV)
        self.kubeconfig = kubeconfig
        self.kubectl = kubectl
        self.log_dir = log_dir
        self.custom = kube.custom
        self.operators: list[OperatorProcess] = []
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        # The client's reads and waits, as the scenarios call them on the harness.
        self.plain = kube.plain
        self.create_pod = kube.create_pod
        self.pod = kube.read_pod
        self.pods = kube.pods
        self.record = kube.record
        self.records = kube.records
        self.record_count = kube.record_count
        self.wait_record = kube.wait_record

    def operator(
        self,
        name: str,
        namespaces: Iterable[str],
        *extra: str,
        kubeconfig: str | None = None,
        lease: bool = True,
    ) -> OperatorProcess:
        """An operator scoped to `namespaces`, on free ports of its own, with a lease of its own.

        With `lease=False` it runs without leader election (when the operator has the option).
        `start()` returns once it leads.
        """
        scope = list(namespaces)
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
            extra_args=args,
            until_leading=True,
        )
        self.operators.append(process)
        return process

    def kubectl_run(self, *args: str) -> str:
        """kubectl against the cluster (admin); its output. Raises when it fails."""
        done = run_kubectl(self.kubectl, self.kubeconfig, *args, check=False, timeout=60)
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
        await super().clean_up()


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
