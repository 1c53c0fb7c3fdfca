"""Colour: roles painted with ANSI codes on a terminal, nothing otherwise.

Formatters pad text to its column first and paint it afterwards, so the colours never shift
a column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_CODES = {
    "head": "1",
    "dim": "2",
    "good": "32",
    "warn": "33",
    "bad": "31",
    "bad-strong": "1;31",
    "note": "36",
}

_BAD_TYPES = frozenset(
    {
        "KilledAfterGrace",
        "OOMKilled",
        "Evicted",
        "Preempted",
        "TaintManagerDeletion",
        "ForceDeleted",
        "ImagePullFailed",
        "PostStartHookFailed",
        "PreStopHookFailed",
        "LivenessRestart",
        "DeletedUnobserved",
        "FailedScheduling",
    }
)
_WARN_TYPES = frozenset(
    {
        "ProbeFailed",
        "BackOff",
        "ContainerRestarted",
        "ContainerNotReady",
        "DeletionRequested",
        "KillingStarted",
        "RemovedFromEndpoints",
    }
)
_GOOD_TYPES = frozenset(
    {
        "Scheduled",
        "SandboxReady",
        "ContainerStarted",
        "ContainerReady",
        "SidecarStarted",
        "SidecarReady",
        "StartupProbePassed",
        "ExitedOnTerm",
    }
)
_DIM_TYPES = frozenset(
    {"ConditionChanged", "ContainerWaiting", "ImagePulling", "ImagePulled", "EventReported"}
)

_GOOD_OUTCOMES = frozenset({"Succeeded", "GracefulShutdown"})
_WARN_OUTCOMES = frozenset({"Deleted", "DeletedUnobserved"})


@dataclass(frozen=True, slots=True)
class Style:
    """Paints text by role when `color` is on."""

    color: bool = False

    def paint(self, text: str, role: str | None) -> str:
        """The text wrapped in the role's colour (as is without colour or role)."""
        code = _CODES.get(role or "")
        if not self.color or not code or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


PLAIN = Style(color=False)


def entry_role(kind: str, exit_code: int | None = None) -> str | None:
    """The colour role of a timeline entry type."""
    if kind in _BAD_TYPES:
        return "bad"
    if kind == "ContainerTerminated":
        return "warn" if exit_code not in (None, 0) else None
    if kind in _WARN_TYPES:
        return "warn"
    if kind in _GOOD_TYPES:
        return "good"
    if kind in _DIM_TYPES:
        return "dim"
    return None


def outcome_role(outcome: str | None) -> str | None:
    """The colour role of an outcome (none while the pod lives)."""
    if outcome is None:
        return None
    if outcome in _GOOD_OUTCOMES:
        return "good"
    if outcome in _WARN_OUTCOMES:
        return "warn"
    return "bad"


def choose_color(*, flag: str, is_tty: bool, environ: Mapping[str, str]) -> bool:
    """Whether to colour: `--color always|never|auto`; auto means a terminal without NO_COLOR."""
    if flag == "always":
        return True
    if flag == "never":
        return False
    return is_tty and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
