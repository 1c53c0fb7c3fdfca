"""What a command prints, from what it read: the pure half of every command.

`-o json|yaml` prints the records as the API returned them (less metadata.managedFields, as
kubectl does): one record as itself, several as a `v1` List.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import yaml

from podtrail.cli import life, table, workload
from podtrail.cli.args import Options
from podtrail.cli.style import Style
from podtrail.cli.workload import Workload

Raw = Mapping[str, Any]


def cleaned(record: Raw) -> dict[str, Any]:
    """The record without metadata.managedFields (kubectl leaves them out too)."""
    copy = dict(record)
    meta = copy.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        copy["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return copy


def serialize(payload: Raw | Sequence[Raw], fmt: str) -> str:
    """One record, or a List of several, as JSON (4-space indent, kubectl's) or YAML."""
    if isinstance(payload, Mapping):
        document: Any = cleaned(payload)
    else:
        document = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [cleaned(item) for item in payload],
            "metadata": {"resourceVersion": ""},
        }
    if fmt == "json":
        return json.dumps(document, indent=4, ensure_ascii=False) + "\n"
    text: str = yaml.safe_dump(
        document, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1 << 16
    )
    return text


def since_moment(options: Options, now: datetime) -> datetime | None:
    """The moment `--since` counts back to."""
    return now - timedelta(seconds=options.since) if options.since is not None else None


def show(record: Raw, options: Options, now: datetime, style: Style) -> str:
    """`kubectl podtrail POD`."""
    if options.output:
        return serialize(record, options.output)
    view = life.View(style=style, since=since_moment(options, now))
    return "\n".join(life.describe(record, view)) + "\n"


def of_workload(
    target: Workload, records: Sequence[Raw], options: Options, now: datetime, style: Style
) -> str:
    """`kubectl podtrail deploy/NAME`: the records of the workload's pods (already selected)."""
    since = since_moment(options, now)
    if since is not None:
        records = table.select(records, table.Filters(since=since))
    if options.output:
        return serialize(records, options.output)
    return "\n".join(workload.describe(target, records, style)) + "\n"


def listing(records: Sequence[Raw], options: Options, now: datetime, style: Style) -> str:
    """`kubectl podtrail ls`: the records that pass the filters, as a table."""
    filters = table.Filters(
        outcomes=options.outcomes, node=options.node, since=since_moment(options, now)
    )
    kept = table.select(records, filters)
    if options.output:
        return serialize(kept, options.output)
    if not kept:
        return ""
    return (
        "\n".join(table.describe(kept, now, all_namespaces=options.all_namespaces, style=style))
        + "\n"
    )
