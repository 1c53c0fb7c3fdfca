"""Bounds that keep a record small; the operator may override each of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MessagePolicy = Literal["none", "first-line"]
"""What a record keeps of Kubernetes' free-text messages: nothing, or the first line of each."""

MESSAGE_POLICIES: tuple[MessagePolicy, ...] = ("none", "first-line")
MAX_TIMELINE_ENTRIES = 1000
MAX_MESSAGE_LENGTH = 1024
MIN_MESSAGE_LENGTH = 32
MAX_PREVIOUS_INSTANCES = 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a record keeps.

    Attributes:
        max_timeline_entries: Timeline entries kept; the least important old ones go first.
        max_message_length: Longest message kept in an entry; longer ones are cut with a marker.
        max_previous_instances: Summaries kept of earlier pods with the same name.
        max_seen_events: Kubernetes Events remembered (identity and count) so a relisted Event
            is not counted twice even after its timeline entry was dropped.
        max_containers: Containers summarised per pod.
        max_endpoints: EndpointSlice memberships remembered per pod.
        kill_slack_seconds: Tolerance after the deadline (and after the kubelet's one-time 2 s
            preStop extension) within which an exit 137 still counts as the grace-period kill.
        messages: "first-line" keeps the first line of every message (Events, conditions,
            waiting and termination messages); "none" keeps no message text at all, not even
            in summaries (termination messages can hold the tail of a container's log).
    """

    max_timeline_entries: int = 200
    max_message_length: int = 256
    max_previous_instances: int = 5
    max_seen_events: int = 128
    max_containers: int = 64
    max_endpoints: int = 32
    kill_slack_seconds: float = 2.0
    messages: MessagePolicy = "first-line"

    def timeline_cap(self) -> int:
        """The timeline bound, at least 2 and at most the schema's maxItems."""
        return max(2, min(int(self.max_timeline_entries), MAX_TIMELINE_ENTRIES))

    def message_cap(self) -> int:
        """The message bound, between 32 and the schema's maxLength."""
        return max(MIN_MESSAGE_LENGTH, min(int(self.max_message_length), MAX_MESSAGE_LENGTH))

    def keeps_messages(self) -> bool:
        """Whether message text is kept at all."""
        return self.messages != "none"

    def previous_cap(self) -> int:
        """The previous-instance bound, between 0 and the schema's maxItems."""
        return max(0, min(int(self.max_previous_instances), MAX_PREVIOUS_INSTANCES))

    def seen_events_cap(self) -> int:
        """The Event-ledger bound, between 8 and the schema's maxItems."""
        return max(8, min(int(self.max_seen_events), 256))

    def containers_cap(self) -> int:
        """The container bound, between 1 and the schema's maxItems."""
        return max(1, min(int(self.max_containers), 64))

    def endpoints_cap(self) -> int:
        """The endpoint bound, between 1 and the schema's maxItems."""
        return max(1, min(int(self.max_endpoints), 32))


DEFAULT_LIMITS = Limits()
