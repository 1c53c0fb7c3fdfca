"""The operator run from the working tree as a child process: the one runner every suite uses.

``OperatorProcess`` starts ``python -m podtrail`` against a kubeconfig with short test
intervals, waits until it says it started, and stops it with SIGTERM (or kills it outright for
the fault tests). Its ports, scope and extra options are arguments, so several operators can run
side by side on one cluster, each scoped to its own namespaces with its own ports and lease.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
STARTED_LINE = "podtrail started"

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


class OperatorProcess:
    """The operator run from the working tree, as `make run` does, with short test intervals."""

    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path,
        *,
        name: str = "operator",
        namespaces: Sequence[str] = (),
        health_port: int = 18080,
        metrics_port: int = 19090,
        extra_args: Sequence[str] = (),
        coalesce_seconds: float = 0.5,
        sweep_seconds: float = 2,
        env: Mapping[str, str] | None = None,
        until_leading: bool = False,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_dir / f"{name}.log"
        self.namespaces = tuple(namespaces)
        self.health_port = health_port
        self.metrics_port = metrics_port
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
