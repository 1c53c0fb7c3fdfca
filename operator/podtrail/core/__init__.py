"""podtrail's pure core: observations in, facts and a bounded record status out.

The core imports only the standard library, reads no clock and does no I/O.
"""

from .advance import Advance, advance
from .facts import Fact, FactType, Source
from .limits import Limits
from .observe import (
    EndpointSeen,
    EventSeen,
    Observation,
    PodGone,
    PodSeen,
    observe_endpoint_slice_change,
    observe_event,
    observe_pod,
)
from .termination import Outcome

__all__ = [
    "Advance",
    "EndpointSeen",
    "EventSeen",
    "Fact",
    "FactType",
    "Limits",
    "Observation",
    "Outcome",
    "PodGone",
    "PodSeen",
    "Source",
    "advance",
    "observe_endpoint_slice_change",
    "observe_event",
    "observe_pod",
]
