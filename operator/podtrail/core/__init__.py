"""podtrail's pure core: observations in, facts and a bounded record status out.

The core imports only the standard library, reads no clock and does no I/O.
"""

from .advance import Advance, Step, advance, load_record, render_record, step
from .facts import Fact, FactType, Source
from .labels import merge_labels, operator_labels
from .limits import Limits, MessagePolicy
from .model import Record
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
from .size import record_size_bound
from .termination import Outcome

__all__ = [
    "Advance",
    "EndpointSeen",
    "EventSeen",
    "Fact",
    "FactType",
    "Limits",
    "MessagePolicy",
    "Observation",
    "Outcome",
    "PodGone",
    "PodSeen",
    "Record",
    "Source",
    "Step",
    "advance",
    "load_record",
    "merge_labels",
    "observe_endpoint_slice_change",
    "observe_event",
    "observe_pod",
    "operator_labels",
    "record_size_bound",
    "render_record",
    "step",
]
