"""The operator's options, read once from the command line and the environment."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from podtrail.core import Limits, MessagePolicy, record_size_bound
from podtrail.core.limits import (
    MAX_MESSAGE_LENGTH,
    MAX_PREVIOUS_INSTANCES,
    MAX_TIMELINE_ENTRIES,
    MESSAGE_POLICIES,
)

RECORD_SIZE_LIMIT = 1024 * 1024
"""Refused: limits whose worst-case record reaches this (etcd refuses requests above 1.5 MiB)."""

LogFormat = Literal["json", "console"]
OtlpProtocol = Literal["grpc", "http"]
OTLP_PROTOCOLS: tuple[OtlpProtocol, ...] = ("grpc", "http")


@dataclasses.dataclass(frozen=True, slots=True)
class PodtrailSettings:
    """Everything an operator run can be told; each option has a flag and a PODTRAIL_* variable."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to track; empty means all namespaces."""

    opt_in: bool = False
    """Track only pods (or namespaces) annotated `podtrail.io/track: "true"`."""

    retention_seconds: int = 86_400
    """How long a record is kept after its pod is gone, unless the record overrides it."""

    max_records_per_namespace: int = 1_000
    """At most this many records per namespace; records of gone pods go first, oldest first."""

    max_records: int = 20_000
    """At most this many records in the cluster, with the same rule."""

    timeline_entries: int = 200
    """Timeline entries kept per record; the less important are dropped first, and counted."""

    message_length: int = 256
    """Event and status messages are cut to this many characters."""

    messages: MessagePolicy = "first-line"
    """`first-line` keeps the first line of every message; `none` keeps no message text at all
    (for clusters where termination messages may hold the tail of a log)."""

    previous_instances: int = 5
    """Summaries of earlier pods with the same name kept per record."""

    coalesce_seconds: float = 1.0
    """One record's status writes are gathered this long; terminal facts are written at once."""

    sweep_seconds: float = 60.0
    """How often the retention sweep runs."""

    write_concurrency: int = 8
    """Status writes in flight at once."""

    log_format: LogFormat = "console"
    """`json` for log pipelines, `console` for people."""

    log_level: str = "info"
    """The lowest level logged."""

    health_port: int = 8080
    """Port of the liveness endpoint (GET /healthz); 0 turns it off."""

    metrics_port: int = 9090
    """Port of the Prometheus endpoint (GET /metrics); 0 turns it off."""

    kubeconfig: str | None = None
    """A kubeconfig path; by default in-cluster config, then $KUBECONFIG or ~/.kube/config."""

    request_timeout_seconds: float = 30.0
    """Every API request but a watch ends within this (a watch: its server-side timeout)."""

    stream_outage_seconds: float = 300.0
    """The liveness probe fails once a stream has been down this long (ten backoff caps)."""

    flush_seconds: float = 20.0
    """On SIGTERM, pending writes get this long (the pod's grace period is longer)."""

    leader_election: bool = True
    """Run the streams and writes only while holding a Lease, so replicas can stand by."""

    lease_name: str = "podtrail"
    """The Lease the replicas compete for."""

    lease_namespace: str = "default"
    """Where the Lease lives: $POD_NAMESPACE in a cluster, else `default`."""

    metrics_namespace_label: bool = True
    """Count pods' ends (outcomes, kills, OOM kills, preStop overruns) by namespace; off for
    clusters with very many namespaces, where a series per namespace costs too much."""

    otlp_endpoint: str = ""
    """Where pods' lives go as OpenTelemetry traces (host:port or a URL); empty: no traces."""

    otlp_protocol: OtlpProtocol = "grpc"
    """`grpc` (OTLP/gRPC, port 4317) or `http` (OTLP/HTTP with protobuf, port 4318)."""

    otlp_headers: tuple[str, ...] = ()
    """`key=value` headers (gRPC metadata) sent with every export, e.g. an authorization."""

    otlp_insecure: bool = False
    """gRPC without TLS (for http the endpoint's scheme decides)."""

    otlp_certificate: str | None = None
    """A CA bundle (PEM) to verify the collector with, instead of the system's."""

    otlp_timeout_seconds: float = 10.0
    """Bound on one export, the exporter's own retries included."""

    otlp_queue_spans: int = 20_000
    """Spans waiting for export at most; a trace that does not fit is dropped, and counted."""

    otlp_live_interval_seconds: float = 60.0
    """How often the closed spans of live pods (ended container runs...) are sent; 0: only
    whole lives, once the pod is gone."""


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    """One command-line option, read also from its PODTRAIL_* variable.

    Its default is the variable's value if set (parsed like the flag's own value, so a bad
    variable is refused clearly), else `fallback` (given the environment), else the built-in
    PodtrailSettings default; `shown` says that default in the help.
    """

    flag: str
    help: str
    kind: Callable[[str], Any] | None = None
    """Parses the value (int, float); by default it is kept as a string."""
    choices: tuple[str, ...] | None = None
    action: str | type[argparse.Action] | None = None
    """`store_true` or argparse.BooleanOptionalAction: a switch, its variable read as a bool."""
    fallback: Callable[[Mapping[str, str]], Any] | None = None
    shown: str = "%(default)s"
    dest: str | None = None
    variable: str | None = ""
    """The variable's name; "" for PODTRAIL_<FLAG>, None for no variable."""

    @property
    def attribute(self) -> str:
        """The PodtrailSettings field the option sets."""
        return self.dest or self.flag.replace("-", "_")

    @property
    def env_name(self) -> str | None:
        """The PODTRAIL_* variable read for the default, if any."""
        if self.variable == "":
            return f"PODTRAIL_{self.attribute.upper()}"
        return self.variable


OPTIONS: tuple[Option, ...] = (
    Option(
        "namespace",
        "track pods of this namespace (repeatable; default all; env PODTRAIL_NAMESPACES, "
        "comma-separated)",
        action="append",
        dest="namespaces",
        variable=None,  # parse_settings splits PODTRAIL_NAMESPACES
    ),
    Option(
        "opt-in",
        'track only pods or namespaces annotated podtrail.io/track: "true"',
        action="store_true",
        shown="off",
    ),
    Option("retention-seconds", "keep records this long after the pod is gone", kind=int),
    Option("max-records-per-namespace", "bound on records per namespace", kind=int),
    Option("max-records", "bound on records in the cluster", kind=int),
    Option("timeline-entries", "timeline entries kept per record", kind=int),
    Option("message-length", "characters kept of each message", kind=int),
    Option("previous-instances", "earlier pods of the same name summarised per record", kind=int),
    Option("coalesce-seconds", "window gathering the status writes of one record", kind=float),
    Option("sweep-seconds", "interval of the retention sweep", kind=float),
    Option("write-concurrency", "status writes in flight at once", kind=int),
    Option("request-timeout-seconds", "bound on every API request but watches", kind=float),
    Option("stream-outage-seconds", "liveness fails once a stream is down this long", kind=float),
    Option("flush-seconds", "bound on writing what is pending at shutdown", kind=float),
    Option("health-port", "liveness endpoint port (0: off)", kind=int),
    Option("metrics-port", "Prometheus metrics port (0: off)", kind=int),
    Option(
        "messages",
        "first-line: keep the first line of every message; none: keep no message text, "
        "not even in summaries",
        choices=MESSAGE_POLICIES,
    ),
    Option(
        "log-format",
        "log rendering",
        choices=("json", "console"),
        fallback=lambda _: "console" if sys.stderr.isatty() else "json",
        shown="console on a terminal, else json",
    ),
    Option("log-level", "lowest level logged", choices=("debug", "info", "warning", "error")),
    Option(
        "leader-election",
        "work only while holding the Lease, so a second replica can stand by",
        action=argparse.BooleanOptionalAction,
        shown="on",
    ),
    Option(
        "metrics-namespace-label",
        "count pods' ends (outcomes, kills, OOM kills, preStop overruns) by namespace; off "
        "for clusters with very many namespaces",
        action=argparse.BooleanOptionalAction,
        shown="on",
    ),
    Option("lease-name", "the Lease's name"),
    Option(
        "lease-namespace",
        "the Lease's namespace",
        fallback=lambda env: env.get("POD_NAMESPACE") or "default",
        shown="$POD_NAMESPACE, else default",
    ),
    Option(
        "otlp-endpoint",
        "send each pod's life as a trace to this OTLP collector (host:port for grpc, a URL "
        "for http; the /v1/traces path is added to a URL without a path); empty: no traces",
        shown="empty",
    ),
    Option("otlp-protocol", "the OTLP transport", choices=OTLP_PROTOCOLS),
    Option(
        "otlp-header",
        "KEY=VALUE sent with every export (repeatable; the variable is comma-separated, "
        "values URL-encoded, as OTEL_EXPORTER_OTLP_HEADERS)",
        action="append",
        dest="otlp_headers",
        shown="none",
        variable="PODTRAIL_OTLP_HEADERS",  # split by parse_settings, not by the parser
    ),
    Option(
        "otlp-insecure",
        "gRPC without TLS (for http the endpoint's scheme decides)",
        action="store_true",
        shown="off",
    ),
    Option(
        "otlp-certificate",
        "CA bundle (PEM) that verifies the collector instead of the system's",
        shown="none",
    ),
    Option("otlp-timeout-seconds", "bound on one export, retries included", kind=float),
    Option("otlp-queue-spans", "spans waiting for export at most", kind=int),
    Option(
        "otlp-live-interval-seconds",
        "seconds between sending the closed spans of live pods (0: only whole lives)",
        kind=float,
    ),
    Option(
        "kubeconfig",
        "kubeconfig path (or a list, as KUBECONFIG takes); without it: in-cluster "
        "credentials, then $KUBECONFIG, then ~/.kube/config",
        variable=None,
    ),
)
"""Every option, in the order --help lists them."""


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _default(option: Option, env: Mapping[str, str]) -> Any:
    """The option's default: its variable, else its fallback, else the built-in one."""
    value = env.get(option.env_name) if option.env_name else None
    if value in (None, ""):
        if option.fallback is not None:
            return option.fallback(env)
        value = getattr(PodtrailSettings(), option.attribute)
        if option.action is None and value is not None:
            return str(value)  # a string default goes through `type` like a flag's value
        return value
    if option.action is not None:
        return _env_bool(value)
    return value


def _help(option: Option) -> str:
    if option.env_name is None:
        return option.help
    return f"{option.help} (env {option.env_name}; default {option.shown})"


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """Describe the command line from OPTIONS; defaults come from the environment, then ours."""
    parser = argparse.ArgumentParser(
        prog="podtrail",
        description="Keep every pod's life as a PodLifecycleRecord timeline.",
    )
    for option in OPTIONS:
        extra: dict[str, Any] = {"type": option.kind} if option.kind is not None else {}
        if option.choices is not None:
            extra["choices"] = option.choices
        if option.action is not None:
            extra["action"] = option.action
        parser.add_argument(
            f"--{option.flag}",
            dest=option.attribute,
            default=None if option.action == "append" else _default(option, env),
            help=_help(option),
            **extra,
        )
    return parser


def parse_settings(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> PodtrailSettings:
    """Build the settings from a command line and an environment, refusing impossible values."""
    environment = os.environ if env is None else env
    parser = build_parser(environment)
    args = parser.parse_args(argv)
    namespaces: list[str] = list(args.namespaces or [])
    if not namespaces and environment.get("PODTRAIL_NAMESPACES"):
        namespaces = [n.strip() for n in environment["PODTRAIL_NAMESPACES"].split(",")]
    chosen = {option.attribute: getattr(args, option.attribute) for option in OPTIONS}
    chosen["namespaces"] = tuple(n for n in namespaces if n)
    headers = list(args.otlp_headers or [])
    chosen["otlp_headers"] = tuple(headers or env_headers(environment.get(HEADERS_VARIABLE, "")))
    settings = PodtrailSettings(**chosen)
    problems = invalid_settings(settings)
    if problems:
        parser.error("; ".join(problems))
    return settings


HEADERS_VARIABLE = "PODTRAIL_OTLP_HEADERS"
_HEADER_KEY = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def env_headers(text: str) -> list[str]:
    """PODTRAIL_OTLP_HEADERS's `k=v` items, as OTEL_EXPORTER_OTLP_HEADERS writes them.

    Comma-separated, values URL-encoded (a comma in a value is %2C); blank items are skipped.
    """
    items = []
    for item in text.split(","):
        key, equals, value = item.partition("=")
        if key.strip() or equals:
            items.append(f"{key.strip()}={urllib.parse.unquote(value.strip())}")
    return items


def _otlp_problems(settings: PodtrailSettings) -> list[str]:
    problems = []
    for number, item in enumerate(settings.otlp_headers, 1):
        key, equals, value = item.partition("=")
        if not equals or not _HEADER_KEY.fullmatch(key.strip()) or re.search(r"[\r\n]", value):
            # Not the item itself: a header is often a credential, and this goes to the log.
            problems.append(f"--otlp-header number {number}: KEY=VALUE expected")
    if settings.otlp_protocol not in OTLP_PROTOCOLS:
        problems.append("--otlp-protocol must be grpc or http")
    endpoint = settings.otlp_endpoint
    if endpoint and settings.otlp_protocol == "http":
        scheme = urllib.parse.urlsplit(endpoint).scheme
        if scheme not in ("http", "https"):
            problems.append(
                "--otlp-endpoint must be an http:// or https:// URL with --otlp-protocol http"
            )
    if settings.otlp_insecure and settings.otlp_certificate:
        problems.append("--otlp-insecure and --otlp-certificate contradict each other")
    if settings.otlp_live_interval_seconds < 0:
        problems.append("--otlp-live-interval-seconds must not be negative")
    return problems


def invalid_settings(settings: PodtrailSettings) -> list[str]:
    """Say what is wrong with a set of options, in the words of the flags."""
    problems = []
    positive = (
        "max_records_per_namespace",
        "max_records",
        "timeline_entries",
        "message_length",
        "sweep_seconds",
        "write_concurrency",
        "request_timeout_seconds",
        "stream_outage_seconds",
        "flush_seconds",
        "otlp_timeout_seconds",
        "otlp_queue_spans",
    )
    for name in positive:
        if getattr(settings, name) <= 0:
            problems.append(f"--{name.replace('_', '-')} must be positive")
    for name in ("retention_seconds", "previous_instances", "coalesce_seconds"):
        if getattr(settings, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must not be negative")
    for name in ("health_port", "metrics_port"):
        if not 0 <= getattr(settings, name) <= 65_535:
            problems.append(f"--{name.replace('_', '-')} must be a port number")
    if settings.messages not in MESSAGE_POLICIES:
        problems.append("--messages must be none or first-line")
    for name, most in (
        ("timeline_entries", MAX_TIMELINE_ENTRIES),
        ("message_length", MAX_MESSAGE_LENGTH),
        ("previous_instances", MAX_PREVIOUS_INSTANCES),
    ):
        if getattr(settings, name) > most:
            problems.append(f"--{name.replace('_', '-')} must be at most {most} (the schema's)")
    problems += _otlp_problems(settings)
    if not problems:
        problems += _record_size_problems(settings)
    return problems


def record_limits(settings: PodtrailSettings) -> Limits:
    """The bounds on a record that these settings choose."""
    return Limits(
        max_timeline_entries=settings.timeline_entries,
        max_message_length=settings.message_length,
        max_previous_instances=settings.previous_instances,
        messages=settings.messages,
    )


def _record_size_problems(settings: PodtrailSettings) -> list[str]:
    """Refuse limits whose worst-case record could come near etcd's request limit."""
    bound = record_size_bound(record_limits(settings))
    if bound < RECORD_SIZE_LIMIT:
        return []
    flags = f"--timeline-entries {settings.timeline_entries}"
    if settings.messages == "none":
        flags += " with --messages none"
        advice = "lower --timeline-entries"
    else:
        flags += f" with --message-length {settings.message_length}"
        advice = "lower one of them"
    if settings.previous_instances != PodtrailSettings().previous_instances:
        flags += f" and --previous-instances {settings.previous_instances}"
    return [
        f"{flags} allows records of up to {bound / RECORD_SIZE_LIMIT:.1f} MiB; "
        f"the limit is 1 MiB: {advice}"
    ]
