"""Prometheus metrics: what the operator recorded, how far behind it runs, what it wrote."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class Metrics:
    """The operator's metrics, in a registry of their own so tests can make fresh ones."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.facts = Counter(
            "podtrail_facts_total",
            "Timeline facts recorded, by type.",
            ["type"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "podtrail_outcomes_total",
            "Pods whose life ended, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.lifecycle = Histogram(
            "podtrail_lifecycle_duration_seconds",
            "Lifecycle durations of tracked pods (timeToSchedule, init, timeToReady, termination).",
            ["stage"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.writes = Counter(
            "podtrail_status_writes_total",
            "Record writes, by kind and result.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.write_lag = Histogram(
            "podtrail_write_lag_seconds",
            "From receiving an observation to its fact being stored in the record.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.observations = Counter(
            "podtrail_observations_total",
            "Observations received, by stream.",
            ["stream"],
            registry=self.registry,
        )
        self.pending = Gauge(
            "podtrail_records_pending",
            "Records with facts not yet written.",
            registry=self.registry,
        )
        self.records = Gauge(
            "podtrail_records_known",
            "Records the operator keeps in memory.",
            registry=self.registry,
        )
        self.swept = Counter(
            "podtrail_records_deleted_total",
            "Records deleted by the sweep, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.stream_restarts = Counter(
            "podtrail_stream_restarts_total",
            "Watch streams restarted, by stream and cause.",
            ["stream", "cause"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "podtrail_leader",
            "1 while this replica holds the leader Lease and runs the writer, else 0.",
            registry=self.registry,
        )
        self.write_failures = Counter(
            "podtrail_record_write_failures_total",
            "Record writes that failed, by reason (throttled, quota, forbidden, invalid, too-large,"
            " server-error, timeout, conflict, connection, other).",
            ["reason"],
            registry=self.registry,
        )
        self.pending_dropped = Counter(
            "podtrail_pending_dropped_total",
            "Observations dropped from a record's pending list past its bound, by kind (applied:"
            " already in the record in memory; unapplied: waiting for the record's reload).",
            ["kind"],
            registry=self.registry,
        )
        self.records_in_memory = Gauge(
            "podtrail_records_in_memory",
            "Records held in memory, by form (full: may still change; stub: ended and written,"
            " read again from the API when something new arrives for it).",
            ["form"],
            registry=self.registry,
        )
        self.api_requests = Counter(
            "podtrail_api_requests_total",
            "Requests to the API server, by call (list, watch, get, create, update, patch, delete)"
            " and result (2xx, 4xx, 5xx, 429, 410, timeout, connection).",
            ["call", "result"],
            registry=self.registry,
        )
        self.stream_item_errors = Counter(
            "podtrail_stream_item_errors_total",
            "Objects a stream could not handle (logged and skipped; the stream goes on).",
            ["stream"],
            registry=self.registry,
        )
        self.stream_outage = Gauge(
            "podtrail_stream_outage_seconds",
            "How long the stream that has been down the longest has been down (0: all up).",
            registry=self.registry,
        )
        self.delete_failures = Counter(
            "podtrail_record_delete_failures_total",
            "Record deletions by the retention sweep that failed, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def count_request(self, call: str, result: str) -> None:
        """The API client's request hook: one count per request made."""
        self.api_requests.labels(call=call, result=result).inc()

    def count_item_error(self, stream: str) -> None:
        """The streams' hook for an object they had to skip."""
        self.stream_item_errors.labels(stream=stream).inc()

    def observe_status_change(
        self, before: Mapping[str, Any] | None, after: Mapping[str, Any]
    ) -> None:
        """Count what a status change newly settled: an outcome, a lifecycle duration."""
        before = before or {}
        outcome = after.get("outcome")
        if outcome and outcome != before.get("outcome"):
            self.outcomes.labels(outcome=str(outcome)).inc()
        old_durations = before.get("durations") or {}
        for stage, seconds in (after.get("durations") or {}).items():
            if stage not in old_durations and isinstance(seconds, int | float):
                self.lifecycle.labels(stage=stage).observe(float(seconds))
