"""The OpenTelemetry SDK's side of traces: the core's spans as SDK spans, and the SDK's exporter.

The core's spans (podtrail.core.trace) are plain values; the SDK's exporters take
``ReadableSpan``s. Ids and times are the core's, unchanged: nothing here decides what a span is.
``otlp_exporter`` makes the SDK's OTLP exporter (gRPC or HTTP with protobuf) for the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from podtrail.core.trace import Attributes, AttrValue, Span
from podtrail.shell.metrics import build_version
from podtrail.shell.settings import PodtrailSettings

SCOPE = InstrumentationScope("podtrail", build_version())
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1

Queued = tuple[int, Attributes, Span]
"""A queued span: its trace id, its pod's resource attributes, the span."""


def nanoseconds(moment: datetime) -> int:
    """Nanoseconds since the epoch, within OTLP's unsigned 64 bits."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    nanos = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
    return min(max(nanos, 0), _UINT64_MAX)


def _value(value: AttrValue) -> AttrValue:
    """An attribute value OTLP can carry: integers are signed 64-bit there."""
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, _INT64[0]), _INT64[1])
    return value


def _attributes(attributes: Attributes) -> dict[str, AttrValue]:
    return {key: _value(value) for key, value in attributes}


def _context(trace: int, span: int) -> SpanContext:
    return SpanContext(trace, span, is_remote=False, trace_flags=_SAMPLED)


def readable_span(trace: int, span: Span, resource: Resource) -> ReadableSpan:
    """One of the core's spans as the SDK's exporters take it."""
    events = [
        Event(event.name, _attributes(event.attributes), timestamp=nanoseconds(event.time))
        for event in span.events
    ]
    status = (
        Status(StatusCode.UNSET) if span.error is None else Status(StatusCode.ERROR, span.error)
    )
    return ReadableSpan(
        name=span.name,
        context=_context(trace, span.span_id),
        parent=None if span.parent_id is None else _context(trace, span.parent_id),
        resource=resource,
        attributes=_attributes(span.attributes),
        events=events,
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=nanoseconds(span.start),
        end_time=nanoseconds(span.end),
        instrumentation_scope=SCOPE,
    )


def readable_spans(
    batch: Sequence[Queued], base: Resource, resources: dict[int, Resource] | None = None
) -> list[ReadableSpan]:
    """A batch as SDK spans, each with its pod's resource.

    A pod's resource is `base` (the SDK's attributes and OTEL_RESOURCE_ATTRIBUTES') with the
    pod's own over it, as Resource.create would make it; `resources` keeps them by trace id.
    """
    resources = {} if resources is None else resources
    spans = []
    for trace, attributes, span in batch:
        resource = resources.get(trace)
        if resource is None:
            resource = resources[trace] = base.merge(Resource(_attributes(attributes)))
        spans.append(readable_span(trace, span, resource))
    return spans


def header_pairs(headers: Sequence[str]) -> list[tuple[str, str]]:
    """`key=value` items as (key, value), keys in lower case (gRPC metadata takes no other)."""
    pairs = []
    for item in headers:
        key, _, value = item.partition("=")
        pairs.append((key.strip().lower(), value.strip()))
    return pairs


def http_traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: an endpoint without a path gets the standard /v1/traces."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def otlp_exporter(settings: PodtrailSettings) -> SpanExporter:
    """The SDK's OTLP span exporter for these settings.

    Imported here, not at the top: an operator without traces does not load gRPC or protobuf.
    The SDK still reads the OTEL_EXPORTER_OTLP_* variables for what is not set here
    (compression, client certificates).
    """
    headers = header_pairs(settings.otlp_headers)
    endpoint, timeout = settings.otlp_endpoint, settings.otlp_timeout_seconds
    if settings.otlp_protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter(
            endpoint=http_traces_url(endpoint),
            certificate_file=settings.otlp_certificate,
            headers=dict(headers),
            timeout=timeout,
        )
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcSpanExporter,
    )

    insecure = settings.otlp_insecure or urlsplit(endpoint).scheme == "http"
    credentials = None
    if not insecure and settings.otlp_certificate:
        roots = Path(settings.otlp_certificate).read_bytes()
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return GrpcSpanExporter(
        endpoint=endpoint,
        insecure=insecure,
        credentials=credentials,
        headers=headers,
        timeout=timeout,
    )
