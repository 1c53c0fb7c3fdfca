"""Defensive reading of JSON from outside, and the caps on what a record keeps of it.

Both the observations (raw pods, Events, EndpointSlices from the API) and the loader of a stored
status read JSON that may hold anything: a value of the wrong type reads as empty or None, never
as an exception, and every string is cut to its cap and made safe to keep. The writer of a
status cuts to the same caps, so what is read and what is written agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_INT = 2**31 - 1
"""The largest int32: counters (restarts, counts, dropped entries) stop here."""
MIN_INT = -(2**31)
"""The smallest int32."""

MAX_NAME = 253  # object names, node names
MAX_UID = 128
MAX_KIND = 63  # a controller's kind
MAX_LABEL = 63  # container names are DNS labels, Service names label values: 63 at most
MAX_REASON = 64  # Kubernetes' reasons are short CamelCase words (the longest about 30)
MAX_CONDITION_TYPE = 128  # readiness gates may be qualified names
MAX_PHASE = 16
MAX_FLAG = 16  # condition status; and words the core writes: kind, state, signal, probe, source
MAX_SHORT = 64  # outcomes and verdicts
MAX_ADDRESS = 64
MAX_CONTAINERS = 64
MAX_CONDITIONS = 16  # a pod has 6 of its own; the rest are readiness gates
MAX_PRE_STOP = 64  # preStop hooks, and failures of hooks
MAX_GRACE = 10 * 366 * 24 * 3600
RUN_ID_LENGTH = 12

# C0 controls other than tab and line ends (JSON writes each as a 6-byte escape) and lone
# surrogates (not encodable as UTF-8): what a string from outside may not bring into a record.
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def clean_text(text: str) -> str:
    """Text from outside made safe to keep.

    Control characters become spaces and lone surrogates U+FFFD; tabs and line ends stay
    (messages are cut at their first line later).
    """
    if _UNSAFE_TEXT.search(text) is None:
        return text
    if _SURROGATE.search(text) is not None:
        # A valid pair held as two code points joins up; a lone one is replaced.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return _CONTROL.sub(" ", text)


def as_map(value: object) -> Mapping[str, Any]:
    """A JSON object, or an empty one."""
    if type(value) is dict:  # nearly always: skips the costlier abstract-class check
        return value
    return value if isinstance(value, Mapping) else {}


def as_list(value: object, limit: int) -> list[Any]:
    """The first ``limit`` items of a JSON array, or none."""
    return list(value[:limit]) if isinstance(value, list) else []


def as_items(value: object, limit: int) -> list[Mapping[str, Any]]:
    """The objects among the first ``limit`` items of a JSON array."""
    if not isinstance(value, list):
        return []
    return [item for item in value[:limit] if isinstance(item, Mapping)]


def as_str(value: object, limit: int = MAX_NAME) -> str | None:
    """A non-empty string cut to ``limit`` and made safe, else None."""
    if not isinstance(value, str) or not value:
        return None
    return clean_text(value[:limit])


def as_word(value: object, limit: int = MAX_SHORT) -> str | None:
    """A word as the core writes them (entry type, signal, probe, state), else None."""
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        return None
    return value if value.isascii() and value.isalpha() else None


def as_int(value: object, low: int = MIN_INT, high: int = MAX_INT) -> int | None:
    """An integer (not a bool) clamped to ``[low, high]``, else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return min(max(value, low), high)


def as_bool(value: object) -> bool | None:
    """A boolean, else None."""
    return value if isinstance(value, bool) else None
