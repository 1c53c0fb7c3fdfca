"""Finding the API server and etcd among this machine's processes, in a fake /proc."""

from __future__ import annotations

import os
from pathlib import Path

from bench import controlplane

LISTEN_TCP6 = (
    "  sl  local_address                         remote_address                        st ...\n"
    "   0: 00000000000000000000000000000000:192B 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000     0        0 1001 2 0 100 0 0 10 0\n"
)
LISTEN_TCP = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout"
    " inode\n"
    "   0: 0100007F:094B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0"
    " 2002 1 0 100 0 0 10 0\n"
    # a connection to 6443, not a listener: it does not make its holder the API server
    "   1: 0100007F:C350 0100007F:192B 01 00000000:00000000 00:00000000 00000000     0        0"
    " 3003 1 0 100 0 0 10 0\n"
)


def stat(cpu_ticks: int, started: int) -> str:
    # pid (comm) state ppid ... utime (14th) stime (15th) ... starttime (22nd)
    fields = ["S"] + ["0"] * 10 + [str(cpu_ticks), "0"] + ["0"] * 6 + [str(started)]
    return "7 (kube apiserver) " + " ".join(fields) + " 0 0\n"


def process(proc: Path, pid: int, argv: list[str], sockets: list[str], cpu: int = 100) -> None:
    pid_dir = proc / str(pid)
    (pid_dir / "fd").mkdir(parents=True)
    (pid_dir / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (pid_dir / "stat").write_text(stat(cpu, 4242))
    for fd, inode in enumerate(sockets):
        os.symlink(f"socket:[{inode}]", pid_dir / "fd" / str(fd))


def fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "tcp6").write_text(LISTEN_TCP6)
    (proc / "net" / "tcp").write_text(LISTEN_TCP)
    apiserver = "/opt/bin/kube-apiserver"
    process(
        proc,
        10,
        [apiserver, "--secure-port", "6443", "--etcd-servers=http://127.0.0.1:2379"],
        ["1001"],
    )
    process(proc, 11, ["/opt/bin/etcd", "--listen-client-urls", "http://127.0.0.1:2379"], ["2002"])
    process(proc, 12, [apiserver, "--secure-port", "7443"], ["3003"])  # another, not listening
    process(proc, 13, ["/usr/bin/docker-proxy", "-host-port", "6443"], [])
    return proc


def test_found_by_name_and_listening_socket(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path)
    pids = controlplane.find_pids("https://10.88.0.1:6443", proc)
    assert pids == {"kube-apiserver": 10, "etcd": 11}
    readings = controlplane.read(pids, proc)
    assert readings["kube-apiserver"].started == 4242
    assert readings["kube-apiserver"].cpu == 100 / os.sysconf("SC_CLK_TCK")


def test_not_found_elsewhere(tmp_path: Path) -> None:
    # kind: the kubeconfig's port is forwarded into a container; nothing here listens on it
    assert controlplane.find_pids("https://127.0.0.1:41234", fake_proc(tmp_path)) == {}


def test_cpu_spent_only_by_the_same_process() -> None:
    reading = controlplane.Reading
    before = {"kube-apiserver": reading(10, 500, 2.0), "etcd": reading(11, 400, 1.0)}
    after = {"kube-apiserver": reading(10, 500, 3.5), "etcd": reading(11, 900, 0.2)}
    assert controlplane.spent(before, after) == {"kube-apiserver": 1.5, "etcd": None}
    assert controlplane.spent({}, {}) == {"kube-apiserver": None, "etcd": None}


def test_options_in_both_forms() -> None:
    argv = ["etcd", "--name", "podtrail", "--data-dir=/var/lib/etcd"]
    assert controlplane.flag(argv, "--name") == "podtrail"
    assert controlplane.flag(argv, "--data-dir") == "/var/lib/etcd"
    assert controlplane.flag(argv, "--missing") is None
