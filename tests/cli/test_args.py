"""The command line: targets, options that belong to one command, refusals."""

from __future__ import annotations

import pytest

from podtrail.cli.args import UsageError, parse
from podtrail.cli.workload import Workload


@pytest.mark.parametrize(
    ("argv", "command", "name", "workload"),
    [
        (["web-1"], "show", "web-1", None),
        (["plr/web-1"], "show", "web-1", None),
        (["pod/ls"], "show", "ls", None),
        (["podlifecyclerecords.podtrail.io/web-1"], "show", "web-1", None),
        (["ls"], "list", None, None),
        (["deploy/web"], "workload", None, Workload("Deployment", "web")),
        (["Deployment/web"], "workload", None, Workload("Deployment", "web")),
        (["deployment", "web"], "workload", None, Workload("Deployment", "web")),
        (["sts/db"], "workload", None, Workload("StatefulSet", "db")),
        (["statefulset/db"], "workload", None, Workload("StatefulSet", "db")),
        (["ds/agent"], "workload", None, Workload("DaemonSet", "agent")),
        (["job/batch"], "workload", None, Workload("Job", "batch")),
        (["rs/web-5d9f"], "workload", None, Workload("ReplicaSet", "web-5d9f")),
        (["replicaset/web-5d9f"], "workload", None, Workload("ReplicaSet", "web-5d9f")),
    ],
)
def test_targets(
    argv: list[str], command: str, name: str | None, workload: Workload | None
) -> None:
    options = parse(argv)
    assert (options.command, options.name, options.workload) == (command, name, workload)


def test_options_anywhere_on_the_line() -> None:
    options = parse(["-n", "shop", "ls", "--outcome", "KilledAfterGrace,OOMKilled", "-A"])
    assert options.command == "list" and options.all_namespaces and options.namespace == "shop"
    assert options.outcomes == {"killedaftergrace", "oomkilled"}
    options = parse(["ls", "--outcome", "Failed", "--outcome", "live", "-l", "app=web"])
    assert options.outcomes == {"failed", "live"} and options.selector == "app=web"
    options = parse(["web-1", "--since", "1h30m", "--context", "kind", "--kubeconfig", "/k"])
    assert options.since == 5400 and options.context == "kind" and options.kubeconfig == "/k"


def test_colour_flags() -> None:
    assert parse(["web-1"]).color == "auto"
    assert parse(["web-1", "--no-color"]).color == "never"
    assert parse(["web-1", "--color", "always"]).color == "always"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "what to show"),
        (["cm/x"], "unknown kind 'cm'"),
        (["deploy/"], "not a name"),
        (["a", "b", "c"], "one target at a time"),
        (["ls", "x"], "ls takes options"),
        (["web-1", "--outcome", "Failed"], "options of `ls`"),
        (["deploy/web", "--node", "n1"], "options of `ls`"),
        (["deploy/web", "-A"], "use -n NAMESPACE"),
        (["web-1", "--since", "yesterday"], "--since: not a duration"),
        (["web-1", "--request-timeout", "0"], "must be positive"),
    ],
)
def test_refusals(argv: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=says.replace("(", r"\(")):
        parse(argv)


def test_argparse_refusals_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["web-1", "-o", "wide"])
    assert exited.value.code == 2
