"""The API server's and etcd's CPU, when they run as processes of this machine.

The local cluster (cluster/up.sh) runs kube-apiserver and etcd as host processes, so their CPU
over a window can be read from /proc like the consumers'. Each is found by its program's name
and by holding the socket that listens on its port here: the kubeconfig's server port for the
API server, the port of its --etcd-servers for etcd. Elsewhere (kind's API server listens in a
container, behind a forwarded port) nothing is found and the figures are left out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from urllib.parse import urlsplit

from bench import procs

PROC = Path("/proc")
APISERVER, ETCD = "kube-apiserver", "etcd"
NAMES = (APISERVER, ETCD)
LISTEN = "0A"  # a TCP socket's state in /proc/net/tcp: listening


@dataclasses.dataclass(frozen=True)
class Reading:
    """A process's CPU so far, and when it started (a restarted one is not compared)."""

    pid: int
    started: int  # clock ticks after boot
    cpu: float


def listening_inodes(port: int, proc: Path = PROC) -> set[str]:
    """The inodes of the TCP sockets (IPv4 or IPv6) listening on `port` in this namespace."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                # sl, local address:port (hex), remote, state, queues, ..., uid, timeout, inode
                if len(fields) > 9 and fields[3] == LISTEN:
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
    return inodes


def flag(argv: list[str], name: str) -> str | None:
    """The value of an option given as `--name value` or `--name=value`."""
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _holds_socket(pid_dir: Path, inodes: set[str]) -> bool:
    links = {f"socket:[{inode}]" for inode in inodes}
    for fd in (pid_dir / "fd").iterdir():
        with contextlib.suppress(OSError):  # closed since the listing
            if os.readlink(fd) in links:
                return True
    return False


def find(program: str, port: int, proc: Path = PROC) -> tuple[int, list[str]] | None:
    """(pid, argv) of the process running `program` that listens on `port` here; or None."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return None
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            argv = [a.decode() for a in (pid_dir / "cmdline").read_bytes().split(b"\0") if a]
            if argv and Path(argv[0]).name == program and _holds_socket(pid_dir, inodes):
                return int(pid_dir.name), argv
        except OSError:  # gone, or not ours to read
            continue
    return None


def find_pids(server_url: str, proc: Path = PROC) -> dict[str, int]:
    """The pids of the API server at `server_url` and of its etcd, those found on this machine."""
    apiserver = find(APISERVER, urlsplit(server_url).port or 443, proc)
    if apiserver is None:
        return {}
    pids = {APISERVER: apiserver[0]}
    etcd_url = (flag(apiserver[1], "--etcd-servers") or "").split(",")[0]
    etcd_port = urlsplit(etcd_url).port if etcd_url else None
    etcd = find(ETCD, etcd_port, proc) if etcd_port else None
    if etcd is not None:
        pids[ETCD] = etcd[0]
    return pids


def read(pids: dict[str, int], proc: Path = PROC) -> dict[str, Reading]:
    """The CPU of each process that still runs."""
    readings = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError, ValueError, IndexError):
            cpu, started = procs.cpu_and_start(pid, proc)
            readings[name] = Reading(pid, started, cpu)
    return readings


def spent(before: dict[str, Reading], after: dict[str, Reading]) -> dict[str, float | None]:
    """CPU seconds each used in between; None when not found, or restarted in between."""
    out: dict[str, float | None] = {}
    for name in NAMES:
        first, last = before.get(name), after.get(name)
        if first is None or last is None or (first.pid, first.started) != (last.pid, last.started):
            out[name] = None
        else:
            out[name] = last.cpu - first.cpu
    return out
