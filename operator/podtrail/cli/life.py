"""One pod's life from its record: header, timeline, durations, containers, termination story.

Pure: a record dict (and the moment `--since` counts back from) in, lines out. Times are
offsets from the pod's creation (T+12.3s).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from podtrail.cli import record as rec
from podtrail.cli.columns import cell, render
from podtrail.cli.style import PLAIN, Style, entry_role, outcome_role
from podtrail.cli.timefmt import gap, offset, seconds
from podtrail.core.clock import format_time, parse_time

Raw = rec.Raw


@dataclass(frozen=True, slots=True)
class View:
    """How to tell a life: colours, and which entries (those at or after `since`, if set)."""

    style: Style = PLAIN
    since: datetime | None = None


def describe(record: Raw, view: View = View()) -> list[str]:
    """Every section of one record, separated by blank lines."""
    base = rec.created(record)
    sections = [
        header(record, base, view.style),
        timeline(record, base, view),
        durations(record, view.style),
        containers(record, base, view.style),
        ending(record, base, view.style),
        earlier(record, base, view.style),
    ]
    lines: list[str] = []
    for section in sections:
        if section:
            if lines:
                lines.append("")
            lines.extend(section)
    return lines


def _at(base: datetime | None, when: datetime | None) -> str:
    """A moment as an offset from creation, or as an absolute time without a base."""
    if when is None:
        return "-"
    span = seconds(base, when)
    return offset(span) if span is not None else format_time(when)


def _field(label: str, value: str, style: Style, role: str | None = None) -> str:
    return style.paint(f"{label}:".ljust(10), "head") + style.paint(value, role)


def header(record: Raw, base: datetime | None, style: Style) -> list[str]:
    """Who the pod is and where its life stands."""
    uid = rec.status(record).get("podUID")
    owner = rec.owner(record)
    owner_text = "-"
    if owner is not None:
        owner_text = owner.short + (f" (Deployment {owner.deployment})" if owner.deployment else "")
    counters = rec.summary(record)
    count_text = ", ".join(
        f"{label} {value}"
        for label, value in (
            ("restarts", rec.restarts(record)),
            ("init", counters.get("init")),
            ("ready", counters.get("ready")),
        )
        if value is not None
    )
    outcome = rec.outcome(record)
    created = format_time(base) + " (T+0.0s: times below count from here)" if base else "-"
    lines = [
        _field("Pod", f"{rec.namespace(record)}/{rec.name(record)}", style, "head")
        + (f" (uid {uid})" if isinstance(uid, str) and uid else ""),
        _field("Owner", owner_text, style),
        _field("Node", rec.node(record) or "-", style),
        _field("Phase", rec.phase(record) or "-", style),
        _field("Outcome", outcome or "- (the pod lives)", style, outcome_role(outcome)),
    ]
    if count_text:
        lines.append(_field("Counters", count_text, style))
    lines.append(_field("Created", created, style))
    return lines


def timeline(record: Raw, base: datetime | None, view: View) -> list[str]:
    """One line per entry: offset, type, source, summary (and repeats)."""
    style = view.style
    entries = rec.timeline(record)
    shown = [e for e in entries if view.since is None or (e.last_time or e.time) >= view.since]
    title = "Timeline:"
    if view.since is not None:
        left_out = len(entries) - len(shown)
        since = format_time(view.since.replace(microsecond=0))
        title = f"Timeline since {since} ({left_out} older left out):"
    dropped = rec.status(record).get("timelineDropped")
    if isinstance(dropped, int) and dropped > 0:
        title += f" [{dropped} entries dropped by the operator to keep the record small]"
    lines = [style.paint(title, "head")]
    if not shown:
        lines.append("  (no entries)")
        return lines
    at_width = max(len(_at(base, e.time)) for e in shown)
    type_width = max(len(e.type) for e in shown)
    source_width = max(len(e.source or "-") for e in shown)
    for item in shown:
        at = _at(base, item.time).ljust(at_width)
        kind = style.paint(item.type, entry_role(item.type, item.exit_code))
        kind += " " * (type_width - len(item.type))
        source = style.paint((item.source or "-").ljust(source_width), "dim")
        repeats = ""
        if item.count > 1:
            until = f", last {_at(base, item.last_time)}" if item.last_time else ""
            repeats = style.paint(f" (×{item.count}{until})", "note")
        lines.append(f"  {style.paint(at, 'dim')}   {kind}   {source}   {item.summary}{repeats}")
    return lines


_GAPS: tuple[tuple[str, str, str, str, str | None], ...] = (
    # label, from, to, explanation, the record's own duration (by plain name)
    ("to schedule", "created", "scheduled", "created → scheduled", "schedule"),
    (
        "init",
        "scheduled",
        "initialized",
        "scheduled → initialized (sandbox, init containers)",
        "init",
    ),
    ("to ready", "created", "ready", "created → ready", "ready"),
    ("deletion to exit", "deletionrequested", "finished", "deletion requested → last exit", None),
    ("exit to removal", "finished", "deleted", "last exit → removed from the API", None),
    (
        "deletion to removal",
        "deletionrequested",
        "deleted",
        "deletion requested → removed",
        "termination",
    ),
)


def gaps(record: Raw) -> list[tuple[str, float, str]]:
    """The gaps that matter, in seconds: (label, value, what it measures).

    The record's own durations (old or new names) come first; a gap the record does not
    hold is computed from its times. Exit gaps are left out when the pod ended before its
    deletion was requested (a finished Job's pod deleted later: nothing to wait for).
    """
    moments = rec.times(record)
    kept = rec.durations(record)
    found: list[tuple[str, float, str]] = []
    for label, start, end, meaning, own in _GAPS:
        value = kept.get(own) if own else None
        if value is None:
            value = seconds(moments.get(start), moments.get(end))
        if value is None:
            continue
        if start == "deletionrequested" or end == "deleted":
            request, finish = moments.get("deletionrequested"), moments.get("finished")
            if request is None or (finish is not None and finish < request):
                continue
        found.append((label, value, meaning))
    return found


def durations(record: Raw, style: Style) -> list[str]:
    """The gaps as a small table."""
    found = gaps(record)
    if not found:
        return []
    label_width = max(len(label) for label, _, _ in found)
    value_width = max(len(gap(value)) for _, value, _ in found)
    lines = [style.paint("Durations:", "head")]
    for label, value, meaning in found:
        lines.append(
            f"  {label.ljust(label_width)}   {gap(value).rjust(value_width)}   "
            + style.paint(meaning, "dim")
        )
    return lines


def _exit(item: Raw) -> str:
    code = item.get("lastExitCode")
    if not isinstance(code, int):
        return "-"
    reason = item.get("lastReason")
    return f"{code} ({reason})" if isinstance(reason, str) and reason else str(code)


def containers(record: Raw, base: datetime | None, style: Style) -> list[str]:
    """Each container as last seen: kind, state, restarts, last exit, start and finish."""
    items = rec.containers(record)
    if not items:
        return []
    rows = []
    for item in items:
        code = item.get("lastExitCode")
        restarts = item.get("restartCount")
        rows.append(
            [
                cell(item.get("name")),
                cell(item.get("kind")),
                cell(item.get("state")),
                cell(restarts, "warn" if isinstance(restarts, int) and restarts > 0 else None),
                cell(_exit(item), "warn" if isinstance(code, int) and code != 0 else None),
                cell(_at(base, parse_time(item.get("startedAt")))),
                cell(_at(base, parse_time(item.get("finishedAt")))),
            ]
        )
    headers = ("NAME", "KIND", "STATE", "RESTARTS", "LAST EXIT", "STARTED", "FINISHED")
    return [style.paint("Containers:", "head"), *render(headers, rows, style, indent="  ")]


def _kv(label: str, value: str, style: Style, role: str | None = None) -> str:
    return "  " + style.paint(label.ljust(11), "dim") + " " + style.paint(value, role)


def _request_lines(block: Raw, base: datetime | None, style: Style) -> list[str]:
    lines = []
    requested = parse_time(block.get("requestedAt"))
    if requested is not None and block.get("seenAtRemoval") is True:
        text = f"not seen; the finished pod was removed at {_at(base, requested)} (grace 0)"
        lines.append(_kv("requested", text, style))
    elif requested is not None:
        grace = block.get("gracePeriodSeconds")
        parts = [_at(base, requested)]
        if isinstance(grace, int):
            parts.append(f"grace period {grace}s")
        deadline = parse_time(block.get("deadline") or block.get("deletionTimestamp"))
        if deadline is not None:
            parts.append(f"SIGKILL deadline {_at(base, deadline)}")
        if block.get("forced") is True:
            parts.append("forced (grace period 0)")
        lines.append(_kv("requested", ", ".join(parts), style))
    killing = parse_time(block.get("killingAt"))
    if killing is not None:
        lines.append(_kv("kubelet", f"stopping containers at {_at(base, killing)}", style))
    reason = block.get("disruptionReason")
    if isinstance(reason, str) and reason:
        message = block.get("disruptionMessage")
        text = f"{reason}: {message}" if isinstance(message, str) and message else reason
        lines.append(_kv("disruption", text, style, "bad"))
    return lines


def _side_lines(block: Raw, base: datetime | None, style: Style) -> list[str]:
    """The preStop hooks, and the Services the pod left."""
    lines = []
    for hook in block.get("preStop") or []:
        if not isinstance(hook, dict) or not hook.get("configured"):
            continue
        failed = parse_time(hook.get("failedAt"))
        state = f"failed at {_at(base, failed)}" if hook.get("failed") else "configured"
        lines.append(
            _kv(
                "preStop",
                f"{hook.get('container')}: {state}",
                style,
                "bad" if hook.get("failed") else None,
            )
        )
    for removal in block.get("endpointRemovals") or []:
        if not isinstance(removal, dict):
            continue
        parts = [f"Service {removal.get('service')}:"]
        terminating = parse_time(removal.get("terminatingAt"))
        if terminating is not None:
            parts.append(f"out of rotation at {_at(base, terminating)}")
        removed = parse_time(removal.get("removedAt"))
        if removed is not None:
            parts.append(f"removed at {_at(base, removed)}")
        lines.append(_kv("endpoints", " ".join(parts), style))
    return lines


def _container_end(item: Raw, style: Style, since: str = "the request") -> str:
    parts = []
    code = item.get("exitCode")
    if isinstance(code, int):
        reason = item.get("reason")
        parts.append(
            f"exit {code}" + (f" ({reason})" if isinstance(reason, str) and reason else "")
        )
    if isinstance(item.get("signal"), str):
        parts.append(f"signal {item['signal']}")
    after = item.get("secondsAfterRequest")
    if isinstance(after, int | float):
        parts.append(f"{gap(float(after))} after {since}")
    late = item.get("secondsFromDeadline")
    if isinstance(late, int | float):
        parts.append(_from_deadline(float(late)))
    verdict = str(item.get("verdict") or "Unknown")
    return _kv(
        str(item.get("name")),
        ", ".join(parts) + ": " + style.paint(verdict, _verdict_role(verdict)),
        style,
    )


def _from_deadline(value: float) -> str:
    if abs(value) < 0.5:
        return "at the deadline"
    return f"{gap(abs(value))} {'after' if value > 0 else 'before'} the deadline"


def _verdict_role(verdict: str) -> str | None:
    if verdict == "ExitedOnTerm":
        return "good"
    return "bad" if verdict in ("KilledAfterGrace", "KilledBeforeDeadline", "OOMKilled") else "warn"


def ending(record: Raw, base: datetime | None, style: Style) -> list[str]:
    """The termination story: request, grace, deadline, each container's end, the evidence."""
    block = rec.termination(record)
    outcome = rec.outcome(record)
    if not block and outcome is None:
        return []
    verdict = block.get("verdict") if isinstance(block.get("verdict"), str) else None
    title = "Termination:" if block else "End:"
    shown = verdict or outcome or "in progress"
    lines = [style.paint(title, "head") + " " + style.paint(shown, outcome_role(shown))]
    lines.extend(_request_lines(block, base, style))
    lines.extend(_side_lines(block, base, style))
    ends = [item for item in block.get("containers") or [] if isinstance(item, dict)]
    # Seen only at removal, the containers are judged from the kubelet's Killing Event.
    since = "the Killing Event" if block.get("seenAtRemoval") is True else "the request"
    lines.extend(_container_end(item, style, since) for item in ends)
    if not ends:
        lines.extend(_own_ends(record, base, style))
    evidence = block.get("evidence")
    if isinstance(evidence, str) and evidence:
        lines.append(_kv("evidence", evidence, style, "note"))
    lines.extend(_removal(record, base, style))
    return lines


def _own_ends(record: Raw, base: datetime | None, style: Style) -> list[str]:
    """App containers that ended on their own (no deletion analysis to show)."""
    lines = []
    for item in rec.containers(record):
        if item.get("kind") != "app" or item.get("state") != "terminated":
            continue
        finished = parse_time(item.get("finishedAt"))
        code = item.get("lastExitCode")
        role = "good" if code == 0 else "bad"
        lines.append(
            _kv(str(item.get("name")), f"exit {_exit(item)} at {_at(base, finished)}", style, role)
        )
    return lines


def _removal(record: Raw, base: datetime | None, style: Style) -> list[str]:
    removal = rec.status(record).get("removal")
    deleted = rec.times(record).get("deleted")
    if isinstance(removal, dict):
        when = parse_time(removal.get("time")) or deleted
        how = "seen" if removal.get("observed") is not False else "not seen: found missing later"
        return [_kv("removed", f"from the API at {_at(base, when)} ({how})", style)]
    if deleted is not None:
        return [_kv("removed", f"from the API at {_at(base, deleted)}", style)]
    return []


def earlier(record: Raw, base: datetime | None, style: Style) -> list[str]:
    """Earlier pods with the same name (a StatefulSet's recreated pods, say), newest first.

    Records of newer operators also keep each earlier pod's last entries and its termination's
    verdict and evidence: they follow the table.
    """
    items = rec.previous_instances(record)
    if not items:
        return []
    rows = []
    for item in items:
        outcome = item.get("outcome") if isinstance(item.get("outcome"), str) else None
        rows.append(
            [
                cell(item.get("uid")),
                cell(_at(base, parse_time(item.get("created")))),
                cell(_at(base, parse_time(item.get("deleted")))),
                cell(item.get("phase")),
                cell(outcome, outcome_role(outcome)),
                cell(item.get("nodeName")),
                cell(item.get("restarts")),
            ]
        )
    title = style.paint(f"Earlier pods named {rec.name(record)} (newest first):", "head")
    headers = ("UID", "CREATED", "DELETED", "PHASE", "OUTCOME", "NODE", "RESTARTS")
    lines = [title, *render(headers, rows, style, indent="  ")]
    for item in items:
        lines.extend(_earlier_story(item, base, style))
    return lines


def _earlier_story(item: Raw, base: datetime | None, style: Style) -> list[str]:
    """An earlier pod's last entries and termination evidence, when the record keeps them."""
    entries = [
        (_at(base, when), str(entry.get("type")), str(entry.get("summary") or ""))
        for entry in item.get("lastEntries") or []
        if isinstance(entry, dict) and (when := parse_time(entry.get("time"))) is not None
    ]
    told = []
    if entries:
        at_width = max(len(at) for at, _, _ in entries)
        type_width = max(len(kind) for _, kind, _ in entries)
        for at, kind, text in entries:
            painted = style.paint(kind, entry_role(kind)) + " " * (type_width - len(kind))
            told.append(f"    {style.paint(at.ljust(at_width), 'dim')}   {painted}   {text}")
    ending = item.get("termination")
    if isinstance(ending, dict) and isinstance(ending.get("evidence"), str):
        verdict = ending.get("verdict")
        prefix = f"{verdict}: " if isinstance(verdict, str) and verdict else ""
        told.append(f"    {style.paint('evidence', 'dim')}   {prefix}{ending['evidence']}")
    if not told:
        return []
    uid = str(item.get("uid") or "?")
    return ["", f"  {style.paint(uid, 'head')}:", *(line.rstrip() for line in told)]
