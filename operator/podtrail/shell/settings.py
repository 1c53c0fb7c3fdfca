"""The operator's options, read once from the command line and the environment."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Literal

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
PodStream = Literal["own", "kopf"]


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

    pod_stream: PodStream = "own"
    """How pods are watched: `own`, a watch started inside the operator that hands over every
    change in order; `kopf`, a Kopf `on.event` handler (Kopf processes only the latest of the
    changes that queue up for one pod, so brief states can be missed; kept for comparison)."""

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


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """Describe the command line; defaults come from the environment, then the built-in ones."""
    defaults = PodtrailSettings()

    def env_or(name: str, fallback: object) -> str | None:
        value = env.get(f"PODTRAIL_{name}")
        return value if value not in (None, "") else (None if fallback is None else str(fallback))

    parser = argparse.ArgumentParser(
        prog="podtrail",
        description="Keep every pod's life as a PodLifecycleRecord timeline.",
    )
    parser.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        default=None,
        help="track pods of this namespace (repeatable; default all; env PODTRAIL_NAMESPACES, "
        "comma-separated)",
    )
    parser.add_argument(
        "--opt-in",
        action="store_true",
        default=_env_bool(env.get("PODTRAIL_OPT_IN", "false")),
        help='track only pods or namespaces annotated podtrail.io/track: "true" '
        "(env PODTRAIL_OPT_IN)",
    )
    numeric: Sequence[tuple[str, type[int] | type[float], str]] = (
        ("retention-seconds", int, "keep records this long after the pod is gone"),
        ("max-records-per-namespace", int, "bound on records per namespace"),
        ("max-records", int, "bound on records in the cluster"),
        ("timeline-entries", int, "timeline entries kept per record"),
        ("message-length", int, "characters kept of each message"),
        ("previous-instances", int, "earlier pods of the same name summarised per record"),
        ("coalesce-seconds", float, "window gathering the status writes of one record"),
        ("sweep-seconds", float, "interval of the retention sweep"),
        ("write-concurrency", int, "status writes in flight at once"),
        ("request-timeout-seconds", float, "bound on every API request but watches"),
        ("stream-outage-seconds", float, "liveness fails once a stream is down this long"),
        ("flush-seconds", float, "bound on writing what is pending at shutdown"),
        ("health-port", int, "liveness endpoint port (0: off)"),
        ("metrics-port", int, "Prometheus metrics port (0: off)"),
    )
    for flag, kind, text in numeric:
        attribute = flag.replace("-", "_")
        env_name = attribute.upper()
        parser.add_argument(
            f"--{flag}",
            type=kind,
            # A string default goes through `type` like a flag: a bad variable is refused clearly.
            default=env_or(env_name, getattr(defaults, attribute)),
            help=f"{text} (env PODTRAIL_{env_name}; default %(default)s)",
        )
    parser.add_argument(
        "--messages",
        choices=MESSAGE_POLICIES,
        default=env_or("MESSAGES", defaults.messages),
        help="first-line: keep the first line of every message; none: keep no message text, "
        "not even in summaries (env PODTRAIL_MESSAGES; default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=env_or("LOG_FORMAT", "console" if sys.stderr.isatty() else "json"),
        help="log rendering (env PODTRAIL_LOG_FORMAT; default: console on a terminal, else json)",
    )
    parser.add_argument(
        "--pod-stream",
        choices=("own", "kopf"),
        default=env_or("POD_STREAM", defaults.pod_stream),
        help="own: the operator's own pod watch, every change in order; kopf: a Kopf on.event "
        "handler, for comparison (env PODTRAIL_POD_STREAM)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=env_or("LOG_LEVEL", defaults.log_level),
        help="lowest level logged (env PODTRAIL_LOG_LEVEL)",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=_env_bool(env.get("PODTRAIL_LEADER_ELECTION", "true")),
        help="work only while holding the Lease, so a second replica can stand by "
        "(env PODTRAIL_LEADER_ELECTION; default on)",
    )
    parser.add_argument(
        "--metrics-namespace-label",
        action=argparse.BooleanOptionalAction,
        default=_env_bool(env.get("PODTRAIL_METRICS_NAMESPACE_LABEL", "true")),
        help="count pods' ends (outcomes, kills, OOM kills, preStop overruns) by namespace; off "
        "for clusters with very many namespaces (env PODTRAIL_METRICS_NAMESPACE_LABEL; "
        "default on)",
    )
    parser.add_argument(
        "--lease-name",
        default=env_or("LEASE_NAME", defaults.lease_name),
        help="the Lease's name (env PODTRAIL_LEASE_NAME; default %(default)s)",
    )
    parser.add_argument(
        "--lease-namespace",
        default=env_or("LEASE_NAMESPACE", env.get("POD_NAMESPACE") or "default"),
        help="the Lease's namespace (env PODTRAIL_LEASE_NAMESPACE; default $POD_NAMESPACE, "
        "else default)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig path (or a list, as KUBECONFIG takes); without it: in-cluster "
        "credentials, then $KUBECONFIG, then ~/.kube/config",
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
    settings = PodtrailSettings(
        namespaces=tuple(n for n in namespaces if n),
        opt_in=bool(args.opt_in),
        retention_seconds=args.retention_seconds,
        max_records_per_namespace=args.max_records_per_namespace,
        max_records=args.max_records,
        timeline_entries=args.timeline_entries,
        message_length=args.message_length,
        messages=args.messages,
        previous_instances=args.previous_instances,
        coalesce_seconds=args.coalesce_seconds,
        sweep_seconds=args.sweep_seconds,
        write_concurrency=args.write_concurrency,
        pod_stream=args.pod_stream,
        log_format=args.log_format,
        log_level=args.log_level,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        kubeconfig=args.kubeconfig,
        request_timeout_seconds=args.request_timeout_seconds,
        stream_outage_seconds=args.stream_outage_seconds,
        flush_seconds=args.flush_seconds,
        leader_election=bool(args.leader_election),
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
        metrics_namespace_label=bool(args.metrics_namespace_label),
    )
    problems = invalid_settings(settings)
    if problems:
        parser.error("; ".join(problems))
    return settings


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
