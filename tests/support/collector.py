"""A real OpenTelemetry Collector for the tests: OTLP in, a file of OTLP JSON out.

``Collector`` runs otelcol-podtrail (built by image/otelcol.sh on first use, into the machine's
cache) as a child process listening on 127.0.0.1 only: OTLP/gRPC on ``grpc_endpoint``
("127.0.0.1:PORT"), OTLP/HTTP on ``http_endpoint`` ("http://127.0.0.1:PORT"; traces at
``traces_url``). Its ports are free ones picked once, so ``stop()`` then ``start()`` brings it
back where it was: an outage, as an exporter sees it. Every trace it receives goes through the
file exporter to ``traces.jsonl`` in its work directory, one OTLP JSON document a line, appended
(a restart keeps what came before) and flushed every 100 ms; ``spans()`` reads them back as
plain dicts. ``running_collector(workdir)`` is the same as a ``with`` block.

The config, written as JSON (which the collector reads as YAML), is::

    receivers:
      otlp:
        protocols:
          grpc: {endpoint: "127.0.0.1:GRPC_PORT"}
          http: {endpoint: "127.0.0.1:HTTP_PORT"}
    exporters:
      file: {path: WORKDIR/traces.jsonl, format: json, append: true, flush_interval: 100ms}
      debug: {verbosity: detailed}        # only with verbose=True: every span in the log
    service:
      telemetry:
        logs: {level: info}
        metrics: {level: none}            # no internal metrics endpoint (:8888 by default)
      pipelines:
        traces: {receivers: [otlp], exporters: [file]}   # + debug with verbose=True
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from tests.support.operator import free_port

REPO = Path(__file__).resolve().parents[2]
BINARY = "otelcol-podtrail"
TRACES_FILE = "traces.jsonl"
FLUSH_INTERVAL = "100ms"

# A decoded OTLP AnyValue.
AttributeValue = str | int | float | bool | bytes | None | list[Any] | dict[str, Any]


class SpanEvent(TypedDict):
    """One event of a span."""

    name: str
    time: datetime
    time_ns: int
    attributes: dict[str, AttributeValue]


class SpanStatus(TypedDict):
    """A span's status: code 0 unset, 1 ok, 2 error (OTLP's, as StatusCode's values)."""

    code: int
    message: str


class Span(TypedDict):
    """One span as the collector wrote it, flattened with its resource and scope.

    Ids are lowercase hex (``parent_span_id`` "" for a root); ``start``/``end`` are UTC
    datetimes (microseconds), ``start_ns``/``end_ns`` the exact Unix nanoseconds.
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start: datetime
    end: datetime
    start_ns: int
    end_ns: int
    attributes: dict[str, AttributeValue]
    events: list[SpanEvent]
    status: SpanStatus
    resource: dict[str, AttributeValue]
    scope: str


@functools.cache
def collector_binary() -> Path:
    """The collector, built by image/otelcol.sh when it is not in the cache (minutes)."""
    out = subprocess.run(
        ["bash", str(REPO / "image" / "otelcol.sh")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"image/otelcol.sh failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip()) / BINARY


def collector_config(
    grpc_port: int, http_port: int, traces_path: Path, *, verbose: bool = False
) -> dict[str, Any]:
    """The collector's config (see the module's docstring)."""
    exporters: dict[str, Any] = {
        "file": {
            "path": str(traces_path),
            "format": "json",
            "append": True,
            "flush_interval": FLUSH_INTERVAL,
        }
    }
    if verbose:
        exporters["debug"] = {"verbosity": "detailed"}
    return {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                    "http": {"endpoint": f"127.0.0.1:{http_port}"},
                }
            }
        },
        "exporters": exporters,
        "service": {
            "telemetry": {"logs": {"level": "info"}, "metrics": {"level": "none"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": sorted(exporters)}},
        },
    }


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Collector:
    """otelcol-podtrail as a child process on 127.0.0.1 (see the module's docstring)."""

    def __init__(
        self,
        workdir: Path,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.workdir = workdir
        self.grpc_port = free_port() if grpc_port is None else grpc_port
        self.http_port = free_port() if http_port is None else http_port
        self.traces_path = workdir / TRACES_FILE
        self.config_path = workdir / "otelcol.yaml"
        self.log_path = workdir / "otelcol.log"
        self.verbose = verbose
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        """OTLP/gRPC, as an exporter's endpoint (plaintext): "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """OTLP/HTTP's base URL: "http://127.0.0.1:PORT"."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def traces_url(self) -> str:
        """OTLP/HTTP's traces URL (an HTTP span exporter's full endpoint)."""
        return f"{self.http_endpoint}/v1/traces"

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start it (again, on the same ports) and wait until both receivers listen."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = collector_config(
            self.grpc_port, self.http_port, self.traces_path, verbose=self.verbose
        )
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        command = [str(collector_binary()), "--config", f"file:{self.config_path}"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_listening(timeout)
        except BaseException:
            self.stop(kill=True)
            raise

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"the collector exited:\n{self.tail()}")
            if _listening(self.grpc_port) and _listening(self.http_port):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the collector did not listen in {timeout:g} s:\n{self.tail()}")

    def stop(self, *, kill: bool = False, timeout: float = 20) -> None:
        """SIGTERM (it flushes the file) or SIGKILL; waits until it is gone."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def tail(self, lines: int = 40) -> str:
        """The last lines of its log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def spans(self) -> list[Span]:
        """Every span written so far, in the file's order (a line still being written waits)."""
        if not self.traces_path.exists():
            return []
        text = self.traces_path.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [span for line in complete.splitlines() if line for span in spans_of(line)]

    def wait_for_spans(self, count: int, timeout: float = 10) -> list[Span]:
        """The spans, once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if len(spans) >= count:
                return spans
            if time.monotonic() > deadline:
                names = [span["name"] for span in spans]
                raise AssertionError(
                    f"{len(spans)} spans after {timeout:g} s, not {count}: {names}\n{self.tail()}"
                )
            time.sleep(0.1)

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_collector(workdir: Path, *, verbose: bool = False) -> Iterator[Collector]:
    """A started Collector for the block; stopped at its end."""
    with Collector(workdir, verbose=verbose) as collector:
        yield collector


def spans_of(document: str) -> list[Span]:
    """The spans of one OTLP JSON TracesData document (a line of the file)."""
    spans: list[Span] = []
    for resource_spans in json.loads(document).get("resourceSpans", []):
        resource = attributes_of(resource_spans.get("resource", {}).get("attributes"))
        for scope_spans in resource_spans.get("scopeSpans", []):
            scope = scope_spans.get("scope", {}).get("name", "")
            for span in scope_spans.get("spans", []):
                spans.append(span_of(span, resource, scope))
    return spans


def span_of(span: Mapping[str, Any], resource: dict[str, AttributeValue], scope: str) -> Span:
    """One OTLP JSON span, flattened."""
    start_ns = int(span.get("startTimeUnixNano", 0))
    end_ns = int(span.get("endTimeUnixNano", 0))
    status = span.get("status", {})
    return Span(
        trace_id=span.get("traceId", ""),
        span_id=span.get("spanId", ""),
        parent_span_id=span.get("parentSpanId", ""),
        name=span.get("name", ""),
        kind=int(span.get("kind", 0)),
        start=utc(start_ns),
        end=utc(end_ns),
        start_ns=start_ns,
        end_ns=end_ns,
        attributes=attributes_of(span.get("attributes")),
        events=[event_of(event) for event in span.get("events", [])],
        status=SpanStatus(code=int(status.get("code", 0)), message=status.get("message", "")),
        resource=resource,
        scope=scope,
    )


def event_of(event: Mapping[str, Any]) -> SpanEvent:
    """One OTLP JSON span event."""
    time_ns = int(event.get("timeUnixNano", 0))
    return SpanEvent(
        name=event.get("name", ""),
        time=utc(time_ns),
        time_ns=time_ns,
        attributes=attributes_of(event.get("attributes")),
    )


def utc(unix_ns: int) -> datetime:
    """Unix nanoseconds as a UTC datetime (to the microsecond, truncated)."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=nanos // 1000)


def attributes_of(pairs: list[Mapping[str, Any]] | None) -> dict[str, AttributeValue]:
    """OTLP JSON KeyValues as a dict."""
    return {pair["key"]: any_value(pair.get("value", {})) for pair in pairs or []}


def any_value(value: Mapping[str, Any]) -> AttributeValue:
    """An OTLP JSON AnyValue as Python's (intValue is a string in JSON; empty is None)."""
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [any_value(item) for item in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return attributes_of(value["kvlistValue"].get("values"))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.support.collector DIR`: a collector until interrupted (for the bench).

    Prints its OTLP/gRPC endpoint first; at the end, how many traces and spans it received.
    """
    args = sys.argv[1:] if argv is None else argv
    workdir = Path(args[0] if args else tempfile.mkdtemp(prefix="podtrail-collector-"))
    workdir.mkdir(parents=True, exist_ok=True)
    with Collector(workdir) as collector:
        print(collector.grpc_endpoint, flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        finally:
            spans = collector.spans()
            traces = {span["trace_id"] for span in spans}
            print(f"{len(traces)} traces, {len(spans)} spans in {workdir / TRACES_FILE}")


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
