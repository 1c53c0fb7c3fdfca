"""The measured processes (operator, raw watch, kube-state-metrics, kwok) and /proc readings."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its threads included), from /proc/<pid>/stat."""
    return cpu_and_start(pid)[0]


def cpu_and_start(pid: int, proc: Path = Path("/proc")) -> tuple[float, int]:
    """(CPU seconds so far, start time in clock ticks after boot) from <proc>/<pid>/stat.

    The start time tells a process from a later one that was given the same pid.
    """
    with open(proc / str(pid) / "stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, int(fields[19])


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB from /proc/<pid>/status."""
    rss = hwm = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return rss, hwm


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


@dataclasses.dataclass
class Consumer:
    """One measured process."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    rss_samples: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start the process in its own session, output to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open by the child
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
        )
        log.close()
        self.started = time.monotonic()
        self.rss_samples = []

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        """CPU seconds so far."""
        return cpu_seconds(self.pid)

    def memory(self) -> tuple[float, float]:
        """(VmRSS, VmHWM) in MiB."""
        return memory_mib(self.pid)

    def sample(self) -> None:
        """Record the current RSS."""
        if self.alive():
            rss, _ = self.memory()
            self.rss_samples.append((time.monotonic(), rss))

    def steady_rss(self, since: float) -> float | None:
        """The median RSS sampled since `since` (monotonic seconds)."""
        values = [rss for t, rss in self.rss_samples if t >= since]
        return statistics.median(values) if values else None

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


async def sample_forever(consumers: list[Consumer], period: float = 1.0) -> None:
    """RSS of every live consumer once a `period` (a task the harness cancels)."""
    while True:
        for consumer in consumers:
            with contextlib.suppress(OSError):
                consumer.sample()
        await asyncio.sleep(period)
