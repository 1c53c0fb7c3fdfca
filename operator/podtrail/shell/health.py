"""Whether the operator's own watch streams are connected: the liveness probe's evidence.

Each stream reports its failures (every restart) and its successes (a list page or a watch
response arrived). A stream is out from its first failure after its last success until its
next success; a stream that has not succeeded since it started is out from its start. A
stream that keeps failing backs off to one attempt every 30 s (the backoff's cap), so an outage
far longer than that, e.g. OUTAGE_LIMIT_SECONDS, means the operator no longer sees the cluster
and a restart may help.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

OUTAGE_LIMIT_SECONDS = 300.0


@dataclasses.dataclass(slots=True)
class StreamState:
    """One stream's health.

    Attributes:
        down_since: monotonic time of the first failure after the last success (or of the
            stream's start before its first success); None while it is up.
        failures: failures since the last success.
        last_cause: the cause of the last failure (a stream restart's cause).
    """

    down_since: float | None = None
    failures: int = 0
    last_cause: str | None = None

    @property
    def up(self) -> bool:
        """Whether the stream's last request worked."""
        return self.down_since is None


class StreamHealth:
    """The health of every stream, keyed by a name such as "pods:all" or "events:team-a"."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._streams: dict[str, StreamState] = {}

    def started(self, stream: str) -> None:
        """A stream begins: it counts as out until its first success."""
        self._streams[stream] = StreamState(down_since=self._monotonic())

    def failed(self, stream: str, cause: str) -> None:
        """A stream's request failed; the outage starts now unless it had started already."""
        state = self._streams.setdefault(stream, StreamState())
        if state.down_since is None:
            state.down_since = self._monotonic()
        state.failures += 1
        state.last_cause = cause

    def succeeded(self, stream: str) -> None:
        """A stream's request worked (a list page or a watch response arrived)."""
        state = self._streams.get(stream)
        if state is None or state.down_since is not None:
            self._streams[stream] = StreamState()

    def longest_outage(self, now: float | None = None) -> float:
        """Seconds the longest-out stream has been out at `now` (monotonic); 0 when all are up."""
        at = self._monotonic() if now is None else now
        return max(
            (at - s.down_since for s in self._streams.values() if s.down_since is not None),
            default=0.0,
        )

    def states(self) -> dict[str, StreamState]:
        """A copy of every stream's state."""
        return {name: dataclasses.replace(state) for name, state in self._streams.items()}
