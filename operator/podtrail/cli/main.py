"""`kubectl-podtrail`: parse, read the records, print.

Exit status 0; 1 after an error, said on stderr; 2 for a usage error.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from podtrail.cli import api, output, workload
from podtrail.cli.args import Options, UsageError, parse, parser
from podtrail.cli.style import Style, choose_color

Raw = dict[str, Any]


def main(argv: Sequence[str] | None = None) -> int:
    """The plugin's entry point."""
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        options = parse(words)
    except UsageError as error:
        parser().print_usage(sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(options, sys.stdout, sys.stderr, os.environ))
    except KeyboardInterrupt:
        return 130


async def run(options: Options, out: TextIO, err: TextIO, environ: Mapping[str, str]) -> int:
    """Read what the options ask for and print it."""
    try:
        cluster = await api.connect(
            options.kubeconfig, options.context, options.request_timeout, environ
        )
    except api.CliError as error:
        print(f"error: {error}", file=err)
        return 1
    color = choose_color(flag=options.color, is_tty=_is_tty(out), environ=environ)
    style = Style(color=color)
    try:
        text, note = await _command(cluster, options, style)
    except api.CliError as error:
        print(f"error: {error}", file=err)
        return 1
    finally:
        await cluster.close()
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        _silence_stdout()
    if note:
        print(note, file=err)
    return 0


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


async def _command(cluster: api.Cluster, options: Options, style: Style) -> tuple[str, str | None]:
    """(what to print, a note for stderr)."""
    now = datetime.now(UTC)
    namespace = options.namespace or cluster.namespace
    if options.command == "show":
        assert options.name is not None
        record = await _one(cluster, options, namespace, options.name)
        return output.show(record, options, now, style), None
    if options.command == "workload":
        assert options.workload is not None
        records = await _of_workload(cluster, namespace, options.workload)
        return output.of_workload(options.workload, records, options, now, style), None
    scope = None if options.all_namespaces else namespace
    records = await api.list_records(cluster, scope, label_selector=options.selector)
    text = output.listing(records, options, now, style)
    where = "any namespace" if scope is None else f"namespace {scope}"
    return text, None if text else f"No records found in {where}."


async def _one(cluster: api.Cluster, options: Options, namespace: str, name: str) -> Raw:
    if options.all_namespaces:
        found = await api.list_records(cluster, None, field_selector=f"metadata.name={name}")
        if len(found) == 1:
            return found[0]
        if not found:
            raise api.CliError(f"no record of a pod named {name} in any namespace")
        spaces = ", ".join(sorted(str((r.get("metadata") or {}).get("namespace")) for r in found))
        raise api.CliError(f"records of pods named {name} in several namespaces ({spaces}): use -n")
    try:
        return await api.get_record(cluster, namespace, name)
    except api.RecordMissingError:
        exists = await api.pod_exists(cluster, namespace, name)
    if exists:
        raise api.CliError(
            f"pod {namespace}/{name} exists but has no record: is the podtrail operator running, "
            "and does it track this namespace and pod (--namespace, --opt-in, podtrail.io/track)?"
        )
    raise api.CliError(
        f"no record of pod {name} in namespace {namespace}: podtrail never saw such a pod, or its "
        "record outlived its retention (try `kubectl podtrail ls`, or -A)"
    )


async def _of_workload(
    cluster: api.Cluster, namespace: str, target: workload.Workload
) -> list[Raw]:
    records = await api.list_records(cluster, namespace)
    mine = [r for r in records if workload.belongs(r, target)]
    if not mine:
        raise api.CliError(
            f"no records of {target.kind} {target.name} in namespace {namespace}: podtrail saw no "
            "pod of it there (check the name, -n, and that podtrail tracks the namespace)"
        )
    return mine


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
