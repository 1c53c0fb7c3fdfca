"""The command line of `kubectl podtrail`: what to show, where, and how."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from podtrail.cli.timefmt import parse_since
from podtrail.cli.workload import KINDS, Workload

RECORD_KINDS = frozenset({"plr", "podlifecyclerecord", "podlifecyclerecords", "pod", "pods", "po"})

USAGE = """\
kubectl podtrail POD | plr/NAME | pod/NAME   [-n NS | -A] [--since D] [-o json|yaml]
       kubectl podtrail KIND/NAME   (deploy, sts, ds, job, rs)   [-n NS] [--since D]
       kubectl podtrail ls   [--outcome O] [--node N] [--since D] [-l SELECTOR] [-n NS | -A]
"""

EPILOG = """\
examples:
  kubectl podtrail web-7d9c-x2x4k -n shop        the pod's timeline, durations, termination
  kubectl podtrail web-7d9c-x2x4k --since 10m    only the last ten minutes of it
  kubectl podtrail deploy/web -n shop            every pod of the Deployment, who replaced whom
  kubectl podtrail ls -A --outcome KilledAfterGrace
  kubectl podtrail plr/web-7d9c-x2x4k -o yaml    the record as the API returns it

A pod named "ls" is shown with `kubectl podtrail pod/ls`.
"""


class UsageError(Exception):
    """The command line asks for something that cannot be done."""


@dataclass(frozen=True, slots=True)
class Options:
    """A parsed command line.

    `command` is "show" (one record, `name`), "workload" (`workload`'s records) or "list".
    """

    command: str
    name: str | None = None
    workload: Workload | None = None
    namespace: str | None = None
    all_namespaces: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    output: str | None = None
    color: str = "auto"
    since: float | None = None
    outcomes: frozenset[str] = field(default_factory=frozenset)
    node: str | None = None
    selector: str | None = None
    request_timeout: float = 30.0


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    p = argparse.ArgumentParser(
        prog="kubectl podtrail",
        usage=USAGE,
        description="Read podtrail's PodLifecycleRecords: what happened to a pod, and when.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("words", nargs="*", metavar="TARGET", help="POD, plr/NAME, KIND/NAME or ls")
    p.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current context)")
    p.add_argument("-o", "--output", choices=("json", "yaml"), help="the record(s) as JSON or YAML")
    p.add_argument("--since", metavar="DURATION", help="only what happened since, e.g. 10m, 2h")
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour (default: auto)",
    )
    p.add_argument("--no-color", action="store_true", help="no colour (also NO_COLOR=1)")
    p.add_argument("--outcome", action="append", default=[], help="ls: only these outcomes "
                   "(comma-separated or repeated; 'live' for pods still alive)")  # fmt: skip
    p.add_argument("--node", help="ls: only pods of this node")
    p.add_argument("-l", "--selector", help="ls: label selector, e.g. app=web")
    p.add_argument(
        "--request-timeout", type=float, default=30.0, metavar="SECONDS", help="per API request"
    )
    return p


def parse(argv: Sequence[str]) -> Options:
    """Options from a command line (without the program name).

    Raises:
        UsageError: the words or the options do not make a command.
        SystemExit: --help, or an option argparse refuses (it prints why).
    """
    ns = parser().parse_intermixed_args(list(argv))
    command, name, workload = target(ns.words)
    since = None
    if ns.since is not None:
        try:
            since = parse_since(ns.since)
        except ValueError as error:
            raise UsageError(f"--since: {error}") from None
    outcomes = frozenset(
        part.strip().lower() for value in ns.outcome for part in value.split(",") if part.strip()
    )
    if command != "list" and (outcomes or ns.node or ns.selector):
        raise UsageError("--outcome, --node and -l/--selector are options of `ls`")
    if command == "workload" and ns.all_namespaces:
        raise UsageError("a workload lives in one namespace: use -n NAMESPACE, not -A")
    if ns.request_timeout <= 0:
        raise UsageError("--request-timeout must be positive")
    return Options(
        command=command,
        name=name,
        workload=workload,
        namespace=ns.namespace,
        all_namespaces=ns.all_namespaces,
        kubeconfig=ns.kubeconfig,
        context=ns.context,
        output=ns.output,
        color="never" if ns.no_color else ns.color,
        since=since,
        outcomes=outcomes,
        node=ns.node,
        selector=ns.selector,
        request_timeout=ns.request_timeout,
    )


def target(words: Sequence[str]) -> tuple[str, str | None, Workload | None]:
    """(command, record name, workload) from the positional words.

    `ls`; `POD`; `plr/NAME` (also pod/, po/); `KIND/NAME` or `KIND NAME` for a workload.
    """
    if not words:
        raise UsageError("what to show: POD, plr/NAME, KIND/NAME (deploy, sts, ds, job, rs) or ls")
    if words[0] == "ls":
        if len(words) > 1:
            raise UsageError(f"ls takes options, not {' '.join(words[1:])!r}")
        return "list", None, None
    if len(words) == 2 and "/" not in words[0]:
        words = [f"{words[0]}/{words[1]}"]
    if len(words) != 1:
        raise UsageError(f"one target at a time, not {' '.join(words)!r}")
    word = words[0]
    if "/" not in word:
        return "show", _name(word), None
    kind, _, name = word.partition("/")
    kind = kind.lower()
    if kind in RECORD_KINDS or kind.endswith(".podtrail.io"):
        return "show", _name(name), None
    if kind in KINDS:
        return "workload", None, Workload(KINDS[kind], _name(name))
    raise UsageError(
        f"unknown kind {kind!r}: use a pod name, plr/NAME, or deploy/, sts/, ds/, job/, rs/NAME"
    )


def _name(text: str) -> str:
    if not text or "/" in text:
        raise UsageError(f"not a name: {text!r}")
    return text
