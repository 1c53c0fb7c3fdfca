"""Prometheus metrics: what the operator recorded, how far behind it runs, what it wrote.

Everything lives in a registry of the operator's own (tests make fresh ones), which also holds
the standard process, platform and garbage-collector metrics and ``podtrail_build_info``.
How pods ended is counted by namespace, so that alerts can be routed to the team owning it;
on clusters with very many namespaces the label can be left out (``namespace_label=False``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from podtrail.core.termination import Outcome, Verdict

_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
_EXPORT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TRACE_DROP_REASONS = ("queue_full", "export_failed", "shutdown")
TRACE_EXPORT_RESULTS = ("ok", "failed", "timeout")
PACKAGE = "podtrail"
REVISION_VARIABLE = "PODTRAIL_REVISION"
UNKNOWN = "unknown"
NAMESPACE_LABEL = "namespace"


def build_version() -> str:
    """The installed package's version, from its metadata."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def build_revision(env: Mapping[str, str] | None = None) -> str:
    """The source revision, else ``unknown``.

    $PODTRAIL_REVISION first (an image sets it from its build's revision), else the commit pip
    recorded when it installed the package from a Git URL.
    """
    environment = os.environ if env is None else env
    if environment.get(REVISION_VARIABLE):
        return environment[REVISION_VARIABLE]
    try:
        recorded = metadata.distribution(PACKAGE).read_text("direct_url.json")
        commit = json.loads(recorded or "{}").get("vcs_info", {}).get("commit_id")
    except (metadata.PackageNotFoundError, ValueError, AttributeError):
        return UNKNOWN
    return commit if isinstance(commit, str) and commit else UNKNOWN


class Metrics:
    """The operator's metrics, in a registry of their own so tests can make fresh ones.

    Args:
        registry: Where to register them; a new registry by default.
        namespace_label: Count pods' ends by namespace (a ``namespace`` label on the outcome,
            kill and preStop counters); off, the same counters have no label for it.
        version: ``podtrail_build_info``'s version; the package's by default.
        revision: Its revision; see ``build_revision``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace_label: bool = True,
        version: str | None = None,
        revision: str | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.namespace_label = namespace_label
        self._opened: set[str] = set()
        self._identity(version or build_version(), revision or build_revision())
        self._ends()
        self._writer()
        self._streams()
        self._traces()

    def _identity(self, version: str, revision: str) -> None:
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.build_info = Gauge(
            "podtrail_build_info",
            "Always 1; the operator's version and source revision as labels.",
            ["version", "revision"],
            registry=self.registry,
        )
        self.build_info.labels(version=version, revision=revision).set(1)
        self.leader = Gauge(
            "podtrail_leader",
            "1 while this replica holds the leader Lease and runs the writer, else 0.",
            registry=self.registry,
        )

    def _ends(self) -> None:
        where = [NAMESPACE_LABEL] if self.namespace_label else []
        self.facts = Counter(
            "podtrail_facts_total",
            "Timeline facts recorded, by type.",
            ["type"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "podtrail_outcomes_total",
            "Pods whose life ended, by namespace and outcome.",
            [*where, "outcome"],
            registry=self.registry,
        )
        self.killed_after_grace = Counter(
            "podtrail_containers_killed_after_grace_total",
            "Containers SIGKILLed at the end of their grace period after a deletion request"
            " (exit 137 at the deadline; the kill is inferred), by namespace.",
            where,
            registry=self.registry,
        )
        self.oom_killed = Counter(
            "podtrail_containers_oom_killed_total",
            "Containers whose end, the end of their pod's life, was an OOM kill, by namespace.",
            where,
            registry=self.registry,
        )
        self.pre_stop_overruns = Counter(
            "podtrail_prestop_overruns_total",
            "Containers with a preStop hook still SIGKILLed after the grace period: the hook and"
            " the shutdown after it took longer than terminationGracePeriodSeconds, by namespace.",
            where,
            registry=self.registry,
        )
        self.lifecycle = Histogram(
            "podtrail_lifecycle_duration_seconds",
            "Lifecycle durations of tracked pods (timeToSchedule, init, timeToReady, termination).",
            ["stage"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )

    def _writer(self) -> None:
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
        self.delete_failures = Counter(
            "podtrail_record_delete_failures_total",
            "Record deletions by the retention sweep that failed, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def _streams(self) -> None:
        self.observations = Counter(
            "podtrail_observations_total",
            "Observations received, by stream.",
            ["stream"],
            registry=self.registry,
        )
        self.pods_unchanged = Counter(
            "podtrail_pod_updates_unchanged_total",
            "Pod updates dropped before the core: nothing it reads changed (e.g. annotations).",
            registry=self.registry,
        )
        self.stream_restarts = Counter(
            "podtrail_stream_restarts_total",
            "Watch streams restarted, by stream and cause.",
            ["stream", "cause"],
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

    def _traces(self) -> None:
        self.trace_spans_exported = Counter(
            "podtrail_trace_spans_exported_total",
            "Spans of pods' lives the OTLP collector accepted (0 while --otlp-endpoint is unset).",
            registry=self.registry,
        )
        self.trace_spans_dropped = Counter(
            "podtrail_trace_spans_dropped_total",
            "Spans not sent, by reason (queue_full: the export queue was full when they were"
            " offered; export_failed: their batch failed every attempt; shutdown: still queued"
            " when the shutdown's bound ran out).",
            ["reason"],
            registry=self.registry,
        )
        self.trace_exports = Counter(
            "podtrail_trace_exports_total",
            "Export attempts of span batches, by result (ok, failed, timeout).",
            ["result"],
            registry=self.registry,
        )
        self.trace_export_seconds = Histogram(
            "podtrail_trace_export_seconds",
            "Time one export attempt took (the exporter's own retries included).",
            buckets=_EXPORT_BUCKETS,
            registry=self.registry,
        )
        self.trace_queue = Gauge(
            "podtrail_trace_queue_spans",
            "Spans waiting for export.",
            registry=self.registry,
        )
        for reason in TRACE_DROP_REASONS:
            self.trace_spans_dropped.labels(reason=reason)
        for result in TRACE_EXPORT_RESULTS:
            self.trace_exports.labels(result=result)

    def count_request(self, call: str, result: str) -> None:
        """The API client's request hook: one count per request made."""
        self.api_requests.labels(call=call, result=result).inc()

    def count_item_error(self, stream: str) -> None:
        """The streams' hook for an object they had to skip."""
        self.stream_item_errors.labels(stream=stream).inc()

    def observe_status_change(
        self,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any],
        namespace: str | None = None,
    ) -> None:
        """Count what a status change newly settled: outcome, containers' ends, durations.

        An outcome is counted whenever it changes; the containers' ends (killed after the grace
        period, OOM-killed, preStop overrun) only when the pod's life first gets an outcome, so
        each is counted once. The record's namespace labels them (when the label is on); the
        first status seen of a namespace makes its series, at 0, so that an alert on their
        increase sees the first kill too.

        Args:
            before: The status as last counted (its ``outcome`` and ``durations`` suffice).
            after: The status now stored.
            namespace: The record's namespace.
        """
        before = before or {}
        where = self._where(namespace)
        if namespace and self.namespace_label and namespace not in self._opened:
            self._open(where)
            self._opened.add(namespace)
        outcome = after.get("outcome")
        if outcome and outcome != before.get("outcome"):
            self.outcomes.labels(outcome=str(outcome), **where).inc()
            if not before.get("outcome"):
                self._count_ends(after, where)
        old_durations = before.get("durations") or {}
        for stage, seconds in (after.get("durations") or {}).items():
            if stage not in old_durations and isinstance(seconds, int | float):
                self.lifecycle.labels(stage=stage).observe(float(seconds))

    def _where(self, namespace: str | None) -> dict[str, str]:
        return {NAMESPACE_LABEL: namespace or ""} if self.namespace_label else {}

    def _open(self, where: Mapping[str, str]) -> None:
        for counter in (self.killed_after_grace, self.oom_killed, self.pre_stop_overruns):
            counter.labels(**where)

    def _count_ends(self, status: Mapping[str, Any], where: Mapping[str, str]) -> None:
        ends = container_ends(status)
        killed = [name for name, verdict in ends.items() if verdict == Verdict.KILLED_AFTER_GRACE]
        oom = sum(1 for verdict in ends.values() if verdict == Verdict.OOM_KILLED)
        if not oom and status.get("outcome") == Outcome.OOM_KILLED:
            oom = 1  # the pod's own end said so, no container's state does any more
        hooked = pre_stop_containers(status)
        self._inc(self.killed_after_grace, where, len(killed))
        self._inc(self.oom_killed, where, oom)
        self._inc(self.pre_stop_overruns, where, sum(1 for name in killed if name in hooked))

    @staticmethod
    def _inc(counter: Counter, where: Mapping[str, str], amount: int) -> None:
        if amount:
            (counter.labels(**where) if where else counter).inc(amount)


def _items(value: object) -> Iterable[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def container_ends(status: Mapping[str, Any]) -> dict[str, str]:
    """How each container of an ended pod ended, by name.

    The termination block's verdict where the pod was deleted, else ``OOMKilled`` for a
    container whose last state says so (a pod that ended on its own).
    """
    ends = {
        str(item["name"]): str(item.get("verdict"))
        for item in _items(_mapping(status.get("termination")).get("containers"))
        if item.get("name")
    }
    for item in _items(status.get("containers")):
        name = item.get("name")
        oom = item.get("state") == "terminated" and item.get("reason") == "OOMKilled"
        if name and str(name) not in ends and oom:
            ends[str(name)] = Verdict.OOM_KILLED
    return ends


def pre_stop_containers(status: Mapping[str, Any]) -> set[str]:
    """The containers that have a preStop hook."""
    hooked = {
        str(item["name"])
        for item in _items(status.get("containers"))
        if item.get("name") and item.get("preStop") is True
    }
    for item in _items(_mapping(status.get("termination")).get("preStop")):
        if item.get("container") and item.get("configured") is True:
            hooked.add(str(item["container"]))
    return hooked
