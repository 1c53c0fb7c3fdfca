"""The operator under test: one interface, two runners, for every suite that needs one.

``OperatorProcess`` runs the operator from the working tree as a child process (``python -m
podtrail`` against a kubeconfig, short test intervals), waits until it says it started, and
stops it with SIGTERM (or kills it outright for the fault tests). Its ports (free ones unless
given), scope and extra options are arguments, so several operators can run side by side on one
cluster, each scoped to its own namespaces with its own ports and lease.

``DeployedOperator`` is the one running in the cluster as the manifests install it (the
Deployment podtrail-system/podtrail, after ``make deploy``): started and stopped by scaling it.

Both are an ``Operator``: ``where``, ``start()``, ``stop()``, ``keep_off(node)``, ``tail()``.
``suite_operator`` gives a suite the one it asked for, and stops a process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import run_kubectl
from tests.support.kube import Kube
from tests.support.records import CRD_NAME

REPO = Path(__file__).resolve().parents[2]
STARTED_LINE = "podtrail started"
OPERATOR_NAMESPACE, OPERATOR_NAME = "podtrail-system", "podtrail"
OPERATOR_SELECTOR = f"app.kubernetes.io/name={OPERATOR_NAME}"

# One sample of the operator's /metrics: (name, sorted label pairs) -> value.
MetricKey = tuple[str, tuple[tuple[str, str], ...]]


@functools.cache
def operator_flags() -> frozenset[str]:
    """The long options this working tree's operator accepts (from its --help)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "podtrail", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=60,
    ).stdout
    return frozenset(word.rstrip(",=") for word in help_text.split() if word.startswith("--"))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def apply_crds(kubectl: str, kubeconfig: str) -> None:
    """Apply crds/ and wait until the PodLifecycleRecord CRD is established."""
    run_kubectl(kubectl, kubeconfig, "apply", "-k", str(REPO / "crds"))
    run_kubectl(
        kubectl,
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        f"crd/{CRD_NAME}",
    )


class Operator(Protocol):
    """What a suite does with its operator, wherever it runs."""

    @property
    def where(self) -> Literal["local", "deployed"]:
        """local (a process from the working tree) or deployed (the cluster's Deployment)."""
        ...

    async def start(self) -> None:
        """Start it (again) and wait until it works."""
        ...

    async def stop(self) -> None:
        """Stop it, letting it flush what it has."""
        ...

    async def keep_off(self, node: str) -> None:
        """Make sure it does not run on the node (about to be stopped)."""
        ...

    def tail(self, lines: int = 25) -> str:
        """The last lines of its log."""
        ...


class OperatorProcess:
    """The operator run from the working tree, as `make run` does, with short test intervals.

    Ports are free ones unless given (0 opens none).
    """

    where: Literal["local", "deployed"] = "local"

    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path,
        *,
        name: str = "operator",
        namespaces: Sequence[str] = (),
        health_port: int | None = None,
        metrics_port: int | None = None,
        extra_args: Sequence[str] = (),
        coalesce_seconds: float = 0.5,
        sweep_seconds: float = 2,
        env: Mapping[str, str] | None = None,
        until_leading: bool = False,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_dir / f"{name}.log"
        self.namespaces = tuple(namespaces)
        self.health_port = free_port() if health_port is None else health_port
        self.metrics_port = free_port() if metrics_port is None else metrics_port
        self.extra_args = tuple(extra_args)
        self.coalesce_seconds = coalesce_seconds
        self.sweep_seconds = sweep_seconds
        self.env = dict(env) if env is not None else None
        self.until_leading = until_leading
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        """The operator's command line."""
        scope = [arg for namespace in self.namespaces for arg in ("--namespace", namespace)]
        return [
            sys.executable,
            "-m",
            "podtrail",
            "--kubeconfig",
            self.kubeconfig,
            "--log-format",
            "json",
            "--coalesce-seconds",
            str(self.coalesce_seconds),
            "--sweep-seconds",
            str(self.sweep_seconds),
            "--health-port",
            str(self.health_port),
            "--metrics-port",
            str(self.metrics_port),
            *scope,
            *self.extra_args,
        ]

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.process is not None and self.process.poll() is None

    async def start(self) -> None:
        """Start the operator and wait until it has caught up and started its streams."""
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=self.env,
        )
        log.close()
        try:
            await self.wait_started(self.starts)
            if self.until_leading:
                await self.wait_leading()
        except BaseException:
            await self.stop()  # an operator that did not come up is not left running
            raise

    async def wait_started(self, times: int, timeout: float = 60) -> None:
        """Wait until the log says "podtrail started" `times` times in all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited:\n{self.tail()}")
            if self.log_path.exists() and self.log_path.read_text().count(STARTED_LINE) >= times:
                return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"the operator did not start in {timeout:g} s:\n{self.tail()}")

    async def wait_leading(self, timeout: float = 60) -> None:
        """Wait until the operator says it leads (podtrail_leader 1); at once if it has no lease."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                samples = await self.metrics()
            except (OSError, RuntimeError, TimeoutError, aiohttp.ClientError):
                samples = None  # the metrics endpoint may come up after the start line
            if samples is not None:
                if not has_metric(samples, "podtrail_leader"):
                    return
                if metric_sum(samples, "podtrail_leader") >= 1:
                    return
            await asyncio.sleep(0.3)
        raise RuntimeError(f"the operator did not take its lease in {timeout:g} s:\n{self.tail()}")

    async def stop(self) -> None:
        """SIGTERM (it flushes what it has), SIGKILL after 20 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        for _ in range(100):
            if self.process.poll() is not None:
                return
            await asyncio.sleep(0.2)
        self.process.kill()
        await self.wait_exited()

    async def kill(self) -> None:
        """SIGKILL: no flush, no clean-up, as a node failure or an OOM kill would end it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.kill()
        await self.wait_exited()

    async def wait_exited(self, timeout: float = 10) -> None:
        """Wait until the child is gone (reaped)."""
        deadline = time.monotonic() + timeout
        while self.process is not None and self.process.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator (pid {self.process.pid}) did not exit")
            await asyncio.sleep(0.05)

    async def keep_off(self, node: str) -> None:
        """Nothing to move: this operator runs on the machine, not on a node."""

    async def get(self, port: int, path: str, timeout: float = 3) -> tuple[int, str]:
        """GET one of the operator's own endpoints on 127.0.0.1: (status, body)."""
        limits = aiohttp.ClientTimeout(total=timeout)
        # trust_env=False: a proxy variable must never send a loopback request elsewhere.
        async with aiohttp.ClientSession(timeout=limits, trust_env=False) as session:
            async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                return response.status, await response.text()

    async def healthz(self, timeout: float = 3) -> int:
        """The liveness endpoint's HTTP status."""
        status, _ = await self.get(self.health_port, "/healthz", timeout)
        return status

    async def metrics(self, timeout: float = 3) -> dict[MetricKey, float]:
        """Every sample the operator exports now."""
        status, text = await self.get(self.metrics_port, "/metrics", timeout)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return parse_metrics(text)

    def tail(self, lines: int = 25) -> str:
        """The last lines of the operator's log."""
        if not self.log_path.exists():
            return "<no log>"
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])


class DeployedOperator:
    """The operator deployed in the cluster by the manifests users apply (make deploy)."""

    where: Literal["local", "deployed"] = "deployed"
    namespace = OPERATOR_NAMESPACE
    name = OPERATOR_NAME
    replicas = 2  # as manifests/ ships it: a leader and a standby

    def __init__(self, kube: Kube, kubectl: str, kubeconfig: str) -> None:
        self.kube = kube
        self.kubectl = kubectl
        self.kubeconfig = kubeconfig

    async def exists(self) -> bool:
        """Whether the Deployment is there."""
        try:
            await self.kube.apps.read_namespaced_deployment(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    async def pods(self) -> list[Any]:
        """Its pods (V1Pod) not being deleted."""
        listing = await self.kube.core.list_namespaced_pod(
            self.namespace, label_selector=OPERATOR_SELECTOR
        )
        return [p for p in listing.items if p.metadata.deletion_timestamp is None]

    async def start(self) -> None:
        """Scale it back to the replicas it had (as shipped: 2) and wait until they are ready."""
        await self.scale(self.replicas)

    async def stop(self) -> None:
        """Scale it to 0 and wait until its pods are gone (a stopping one still watches)."""
        deployment = await self.kube.apps.read_namespaced_deployment(self.name, self.namespace)
        self.replicas = deployment.spec.replicas or self.replicas
        await self.scale(0)

    async def scale(self, replicas: int, timeout: float = 120) -> None:
        """Set its replicas; wait until exactly that many pods exist and are ready."""
        await self.kube.apps.patch_namespaced_deployment_scale(
            self.name, self.namespace, {"spec": {"replicas": replicas}}
        )
        await self.wait_ready(replicas, timeout)

    async def wait_ready(self, replicas: int | None = None, timeout: float = 120) -> None:
        """Wait until the Deployment has its replicas (or these), all ready, and no other pod."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            deployment = await self.kube.apps.read_namespaced_deployment(self.name, self.namespace)
            wanted = (deployment.spec.replicas or 0) if replicas is None else replicas
            status = deployment.status
            listing = await self.kube.core.list_namespaced_pod(
                self.namespace, label_selector=OPERATOR_SELECTOR
            )
            if (
                (replicas is not None or wanted)
                and (status.ready_replicas or 0) == wanted == (status.replicas or 0)
                and len(listing.items) == wanted
            ):
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the operator's Deployment is not ready after {timeout:g} s")

    async def keep_off(self, node: str) -> None:
        """Move the operator off the node that is about to be stopped (cordon, delete, uncordon)."""
        on_node = [p for p in await self.pods() if p.spec.node_name == node]
        if not on_node:
            return
        self.run_kubectl("cordon", node)
        try:
            for pod in on_node:
                await self.kube.core.delete_namespaced_pod(pod.metadata.name, self.namespace)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                pods = await self.pods()
                if pods and all(p.spec.node_name and p.spec.node_name != node for p in pods):
                    break
                await asyncio.sleep(0.5)
            await self.wait_ready()
        finally:
            self.run_kubectl("uncordon", node)
        assert all(p.spec.node_name != node for p in await self.pods()), "operator still there"

    def run_kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """kubectl against the operator's cluster."""
        return run_kubectl(self.kubectl, self.kubeconfig, *args, check=check)

    def tail(self, lines: int = 25) -> str:
        """The last lines of the Deployment's log (kubectl logs deploy/podtrail)."""
        result = self.run_kubectl(
            "-n", self.namespace, "logs", f"deploy/{self.name}", f"--tail={lines}", check=False
        )
        return result.stdout + result.stderr


@contextlib.asynccontextmanager
async def suite_operator(
    kube: Kube,
    kubectl: str,
    kubeconfig: str,
    *,
    deployed: bool | None,
    suite: str,
    **options: Any,
) -> AsyncIterator[OperatorProcess | DeployedOperator]:
    """The operator a suite runs against, for as long as the block lasts.

    ``deployed``: True, the Deployment (which must be there and gets ready); False, a process
    from the working tree (the CRD applied first; stopped at the end, its log path printed);
    None, the Deployment when there is one, else a process. ``options`` go to OperatorProcess.
    """
    there = DeployedOperator(kube, kubectl, kubeconfig)
    if deployed is not False and await there.exists():
        await there.wait_ready()
        yield there
        return
    if deployed:
        raise AssertionError(
            "the deployed operator was asked for but none is deployed (make deploy)"
        )
    apply_crds(kubectl, kubeconfig)
    local = OperatorProcess(
        kubeconfig, Path(tempfile.mkdtemp(prefix=f"podtrail-{suite}-")), **options
    )
    try:
        await local.start()
        yield local
    finally:
        await local.stop()  # also when it did not start: no process is left behind
        print(f"\noperator log: {local.log_path}")


def parse_metrics(text: str) -> dict[MetricKey, float]:
    """Prometheus text format -> {(sample name, labels): value}."""
    samples: dict[MetricKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric_sum(samples: Mapping[MetricKey, float], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    return sum(
        value
        for (sample, pairs), value in samples.items()
        if sample == name and all((key, want) in pairs for key, want in labels.items())
    )


def has_metric(samples: Mapping[MetricKey, float], name: str) -> bool:
    """Whether the operator exports a sample of this name at all."""
    return any(sample == name for sample, _ in samples)
