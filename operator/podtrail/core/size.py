"""An upper bound of a rendered record's size, from the caps render.py applies.

etcd refuses a request above 1.5 MiB (its default ``--max-request-bytes``), so the operator
refuses limits whose worst-case record could come near that. The bound counts the status as
Python's ``json.dumps(status, ensure_ascii=False)`` writes it (default separators, UTF-8),
with every string that can come from outside at its cap and made of 4-byte characters. Strings
the core writes itself (times, enum values, keys and Event ids, which are plain ASCII) count one
byte per character.

Other encodings of the same status: Go's encoder (the API server's, for etcd) writes ``<``,
``>`` and ``&`` as 6-byte escapes, at most 1.5 times a 4-byte character; ``ensure_ascii=True``
(the API client's request body) writes a 4-byte character as a 12-byte surrogate-pair escape,
so the request stays under 3 times the bound, below the API server's 3 MiB body limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._access import (
    MAX_ADDRESS,
    MAX_CONDITION_TYPE,
    MAX_CONDITIONS,
    MAX_FLAG,
    MAX_KIND,
    MAX_LABEL,
    MAX_NAME,
    MAX_PHASE,
    MAX_PRE_STOP,
    MAX_REASON,
    MAX_SHORT,
    MAX_UID,
    MIN_INT,
    RUN_ID_LENGTH,
)
from .facts import MAX_EVENT_ID, MAX_KEY_LENGTH, MAX_SUMMARY_LENGTH
from .history import END_EVIDENCE, LAST_MOMENTS, MOMENT_SUMMARY
from .labels import MARK_LENGTH, MAX_MARKS
from .limits import Limits
from .render import LAST, MAX_EVIDENCE, MAX_LAST_EVENT, MAX_OWNER
from .termination import Outcome, Verdict

MIB = 1024 * 1024
WIDEST_CHARACTER = 4  # bytes of the widest UTF-8 character; escapes (\" \\ \n \t) take 2
TIME = 2 + len("2025-06-01T12:00:00.000000Z")
INT = len(str(MIN_INT))
FLOAT = len("-2.2250738585072014e-308")  # the longest repr of a float
BOOL = len("false")
OUTCOME = 2 + max(len(str(outcome)) for outcome in Outcome)
VERDICT = 2 + max(len(str(verdict)) for verdict in Verdict)


def _text(chars: int) -> int:
    """A string from outside: quotes and up to ``chars`` characters of 4 bytes."""
    return 2 + WIDEST_CHARACTER * chars


def _plain(chars: int) -> int:
    """A string the core writes in plain ASCII."""
    return 2 + chars


def _object(fields: Mapping[str, int]) -> int:
    """``{"name": value, ...}`` with every field present, as json.dumps separates them."""
    members = sum(len(name) + 4 + size for name, size in fields.items())
    return 2 + members + 2 * max(0, len(fields) - 1)


def _array(count: int, item: int) -> int:
    return 2 + count * item + 2 * max(0, count - 1)


def _entry(limits: Limits) -> int:
    fields = {
        "time": TIME,
        "type": _plain(MAX_SHORT),
        "summary": _text(MAX_SUMMARY_LENGTH),
        "container": _text(MAX_LABEL),
        "reason": _text(MAX_REASON),
        "fromPhase": _text(MAX_PHASE),
        "toPhase": _text(MAX_PHASE),
        "exitCode": INT,
        "signal": _plain(MAX_FLAG),
        "probe": _plain(MAX_FLAG),
        "count": INT,
        "lastTime": TIME,
        "source": _plain(MAX_FLAG),
    }
    if limits.keeps_messages():
        fields["message"] = _text(limits.message_cap())
    return _object(fields)


def _containers(limits: Limits) -> int:
    container = {
        "name": _text(MAX_LABEL),
        "kind": _plain(MAX_FLAG),
        "state": _plain(MAX_FLAG),
        "reason": _text(MAX_REASON),
        "ready": BOOL,
        "started": BOOL,
        "restartCount": INT,
        "lastExitCode": INT,
        "lastReason": _text(MAX_REASON),
        "startedAt": TIME,
        "finishedAt": TIME,
        "preStop": BOOL,
        "startedRun": _text(RUN_ID_LENGTH),
        "finishedRun": _text(RUN_ID_LENGTH),
    }
    return _array(limits.containers_cap(), _object(container))


def _termination(limits: Limits) -> int:
    pre_stop = {"container": _text(MAX_LABEL), "configured": BOOL, "failed": BOOL, "failedAt": TIME}
    removal = {"service": _text(MAX_LABEL), "terminatingAt": TIME, "removedAt": TIME}
    judgement = {
        "name": _text(MAX_LABEL),
        "verdict": VERDICT,
        "exitCode": INT,
        "reason": _text(MAX_REASON),
        "signal": _plain(MAX_FLAG),
        "finishedAt": TIME,
        "secondsAfterRequest": FLOAT,
        "secondsFromDeadline": FLOAT,
    }
    fields = {
        "killingAt": TIME,
        "disruptionReason": _text(MAX_REASON),
        "preStop": _array(MAX_PRE_STOP, _object(pre_stop)),
        "endpointRemovals": _array(limits.endpoints_cap(), _object(removal)),
        "containers": _array(limits.containers_cap(), _object(judgement)),
        "verdict": OUTCOME,
        "evidence": _text(MAX_EVIDENCE),
        "requestedAt": TIME,
        "deletionTimestamp": TIME,
        "gracePeriodSeconds": INT,
        "deadline": TIME,
        "forced": BOOL,
        "seenAtRemoval": BOOL,
    }
    if limits.keeps_messages():
        fields["disruptionMessage"] = _text(limits.message_cap())
    return _object(fields)


def _lists(limits: Limits) -> dict[str, int]:
    """The status's other lists: conditions, endpoints, previous instances, Event ledger."""
    condition = {
        "type": _text(MAX_CONDITION_TYPE),
        "status": _text(MAX_FLAG),
        "lastTransitionTime": TIME,
        "reason": _text(MAX_REASON),
    }
    if limits.keeps_messages():
        condition["message"] = _text(limits.message_cap())
    endpoint = {
        "service": _text(MAX_LABEL),
        "address": _text(MAX_ADDRESS),
        "ready": BOOL,
        "serving": BOOL,
        "terminating": BOOL,
        "since": TIME,
    }
    moment = {"time": TIME, "type": _plain(MAX_SHORT), "summary": _text(MOMENT_SUMMARY)}
    end = {
        "requestedAt": TIME,
        "gracePeriodSeconds": INT,
        "forced": BOOL,
        "killingAt": TIME,
        "disruptionReason": _text(MAX_REASON),
        "verdict": OUTCOME,
        "evidence": _text(END_EVIDENCE),
    }
    instance = {
        "uid": _text(MAX_UID),
        "created": TIME,
        "deleted": TIME,
        "outcome": _text(MAX_SHORT),
        "phase": _text(MAX_PHASE),
        "nodeName": _text(MAX_NAME),
        "restarts": INT,
        "timelineEntries": INT,
        "lastEntries": _array(LAST_MOMENTS, _object(moment)),
        "termination": _object(end),
    }
    return {
        "conditions": _array(MAX_CONDITIONS, _object(condition)),
        "endpoints": _array(limits.endpoints_cap(), _object(endpoint)),
        "previousInstances": _array(limits.previous_cap(), _object(instance)),
    }


def _tracking(limits: Limits) -> int:
    """The bookkeeping: timeline keys, the Event ledger (``<id> <count> <time>``), label marks."""
    ledger_item = _plain(MAX_EVENT_ID + 1 + INT + 1 + TIME - 2)
    return _object(
        {
            "timelineKeys": _array(limits.timeline_cap(), _plain(MAX_KEY_LENGTH)),
            "events": _array(limits.seen_events_cap(), ledger_item),
            "labels": _array(MAX_MARKS, _plain(MARK_LENGTH)),
        }
    )


def record_size_bound(limits: Limits) -> int:
    """The most bytes a record's status can take as JSON under these limits (see above)."""
    counters = ("initDone", "initTotal", "readyContainers", "totalContainers", "restarts")
    summary = {name: INT for name in counters} | {
        "init": _plain(2 * 10 + 1),
        "ready": _plain(2 * 10 + 1 + len(LAST)),
        "phase": _text(MAX_PHASE + len(LAST)),
        "owner": _text(MAX_OWNER),
    }
    times = ("created", "scheduled", "initialized", "ready", "deletionRequested", "deleted")
    stages = ("timeToSchedule", "init", "timeToReady", "termination")
    durations = tuple(f"{name}Seconds" for name in stages)
    owner = {"kind": _text(MAX_KIND), "name": _text(MAX_NAME), "deployment": _text(MAX_NAME)}
    status = {
        "podUID": _text(MAX_UID),
        "nodeName": _text(MAX_NAME),
        "phase": _text(MAX_PHASE),
        "reason": _text(MAX_REASON),
        "outcome": OUTCOME,
        "owner": _object(owner),
        "summary": _object(summary),
        "times": _object({name: TIME for name in (*times, "finished")}),
        "durations": _object({name: FLOAT for name in durations}),
        "containers": _containers(limits),
        "probeFailures": _object({name: INT for name in ("liveness", "readiness", "startup")}),
        "termination": _termination(limits),
        "removal": _object({"time": TIME, "observed": BOOL}),
        "timeline": _array(limits.timeline_cap(), _entry(limits)),
        "timelineDropped": INT,
        "lastEvent": _text(MAX_LAST_EVENT),
        **_lists(limits),
        "tracking": _tracking(limits),
    }
    return _object(status)
