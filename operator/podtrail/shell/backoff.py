"""How long to wait before trying again: capped exponential backoff with jitter.

Every stream, every retried call and every record write waits through one of these, so a sick
API server sees requests spread out and slowing down, never a hot loop.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

INITIAL_SECONDS = 0.5
CAP_SECONDS = 30.0


@dataclasses.dataclass(slots=True)
class Backoff:
    """Delays of 0.5 s, 1 s, 2 s … up to 30 s, each jittered down to half, reset on success.

    A server's Retry-After is honoured (the delay is at least that, still within the cap), so a
    throttled client comes back when it was told to and not before.
    """

    initial: float = INITIAL_SECONDS
    cap: float = CAP_SECONDS
    factor: float = 2.0
    jitter: Callable[[], float] = random.random
    failures: int = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        """The wait before the next attempt, counting this failure."""
        base = min(self.cap, self.initial * self.factor ** min(self.failures, 32))
        self.failures += 1
        delay = base * (0.5 + 0.5 * self.jitter())
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def reset(self) -> None:
        """The last attempt worked: start from the shortest delay again."""
        self.failures = 0
