import argparse
import dataclasses

import pytest

from podtrail import core
from podtrail.shell.settings import (
    OPTIONS,
    RECORD_SIZE_LIMIT,
    Option,
    PodtrailSettings,
    build_parser,
    invalid_settings,
    parse_settings,
    record_limits,
)


def test_defaults() -> None:
    settings = parse_settings([], env={})
    assert settings.namespaces == ()
    assert settings.retention_seconds == 86_400
    assert settings.opt_in is False
    assert settings.log_format in {"json", "console"}


def test_environment_then_flags() -> None:
    env = {
        "PODTRAIL_NAMESPACES": "a, b",
        "PODTRAIL_OPT_IN": "true",
        "PODTRAIL_RETENTION_SECONDS": "60",
        "PODTRAIL_LOG_FORMAT": "json",
        "PODTRAIL_COALESCE_SECONDS": "0.5",
    }
    settings = parse_settings([], env=env)
    assert settings == PodtrailSettings(
        namespaces=("a", "b"),
        opt_in=True,
        retention_seconds=60,
        log_format="json",
        coalesce_seconds=0.5,
    )
    flagged = parse_settings(["--namespace", "c", "--retention-seconds", "5"], env=env)
    assert flagged.namespaces == ("c",)
    assert flagged.retention_seconds == 5


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-records", "0"],
        ["--retention-seconds", "-1"],
        ["--health-port", "70000"],
        ["--log-format", "xml"],
        ["--coalesce-seconds", "soon"],
    ],
)
def test_impossible_values_are_refused_with_the_flag_named(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv, env={})
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_a_bad_environment_variable_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    # A Service named podtrail-metrics would inject PODTRAIL_METRICS_PORT=tcp://...
    with pytest.raises(SystemExit):
        parse_settings([], env={"PODTRAIL_METRICS_PORT": "tcp://10.0.0.7:9090"})
    assert "--metrics-port" in capsys.readouterr().err


def test_messages_policy_from_flag_and_environment() -> None:
    assert parse_settings([], env={}).messages == "first-line"
    assert parse_settings([], env={"PODTRAIL_MESSAGES": "none"}).messages == "none"
    flagged = parse_settings(["--messages", "first-line"], env={"PODTRAIL_MESSAGES": "none"})
    assert flagged.messages == "first-line"
    assert record_limits(parse_settings(["--messages", "none"], env={})).messages == "none"


@pytest.mark.parametrize(
    "argv", [["--messages", "all"], ["--timeline-entries", "1001"], ["--message-length", "4096"]]
)
def test_impossible_record_limits_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_settings(argv, env={})
    assert argv[0] in capsys.readouterr().err


def test_a_bad_messages_variable_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([], env={"PODTRAIL_MESSAGES": "everything"})
    assert "--messages" in capsys.readouterr().err


def test_records_that_could_pass_1_mib_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--timeline-entries", "1000", "--message-length", "1024"], env={})
    error = capsys.readouterr().err
    assert "--timeline-entries 1000 with --message-length 1024 allows records of up to" in error
    assert "MiB; the limit is 1 MiB: lower one of them" in error


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--messages", "none"],
        ["--messages", "none", "--timeline-entries", "250"],
        ["--timeline-entries", "20", "--message-length", "1024", "--previous-instances", "20"],
    ],
)
def test_settings_within_the_size_limit_are_accepted(argv: list[str]) -> None:
    settings = parse_settings(argv, env={})
    assert core.record_size_bound(record_limits(settings)) < RECORD_SIZE_LIMIT


def test_the_size_problem_names_the_flags_in_play() -> None:
    wide = PodtrailSettings(timeline_entries=1000, messages="none", previous_instances=20)
    (problem,) = invalid_settings(wide)
    assert problem.startswith("--timeline-entries 1000 with --messages none and ")
    assert "--previous-instances 20" in problem and "lower --timeline-entries" in problem


def test_leader_election_is_on_with_the_lease_in_the_pods_namespace() -> None:
    settings = parse_settings([], env={"POD_NAMESPACE": "podtrail-system"})
    assert settings.leader_election
    assert (settings.lease_namespace, settings.lease_name) == ("podtrail-system", "podtrail")
    assert parse_settings([], env={}).lease_namespace == "default"


def test_leader_election_can_be_turned_off_and_the_lease_named() -> None:
    off = parse_settings(["--no-leader-election"], env={})
    assert not off.leader_election
    named = parse_settings(
        ["--lease-name", "team-a"],
        env={"PODTRAIL_LEADER_ELECTION": "false", "PODTRAIL_LEASE_NAMESPACE": "ops"},
    )
    assert (named.leader_election, named.lease_name, named.lease_namespace) == (
        False,
        "team-a",
        "ops",
    )


def test_time_bounds_of_requests_streams_and_shutdown() -> None:
    defaults = parse_settings([], env={})
    assert (
        defaults.request_timeout_seconds,
        defaults.stream_outage_seconds,
        defaults.flush_seconds,
    ) == (30.0, 300.0, 20.0)
    chosen = parse_settings(
        ["--request-timeout-seconds", "5", "--flush-seconds", "8"],
        env={"PODTRAIL_STREAM_OUTAGE_SECONDS": "60"},
    )
    assert (chosen.request_timeout_seconds, chosen.stream_outage_seconds) == (5.0, 60.0)
    assert chosen.flush_seconds == 8.0


@pytest.mark.parametrize(
    "flag", ["--request-timeout-seconds", "--stream-outage-seconds", "--flush-seconds"]
)
def test_time_bounds_must_be_positive(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([flag, "0"], env={})
    assert f"{flag} must be positive" in capsys.readouterr().err


# A value for each setting other than its default, as a flag or variable gives it.
OTHER_VALUES: dict[str, tuple[str, object]] = {
    "namespaces": ("team-a", ("team-a",)),
    "opt_in": ("true", True),
    "retention_seconds": ("60", 60),
    "max_records_per_namespace": ("10", 10),
    "max_records": ("100", 100),
    "timeline_entries": ("50", 50),
    "message_length": ("64", 64),
    "messages": ("none", "none"),
    "previous_instances": ("2", 2),
    "coalesce_seconds": ("0.5", 0.5),
    "sweep_seconds": ("5", 5.0),
    "write_concurrency": ("2", 2),
    "log_format": ("console", "console"),
    "log_level": ("debug", "debug"),
    "health_port": ("0", 0),
    "metrics_port": ("0", 0),
    "kubeconfig": ("/tmp/config", "/tmp/config"),
    "request_timeout_seconds": ("5", 5.0),
    "stream_outage_seconds": ("60", 60.0),
    "flush_seconds": ("8", 8.0),
    "leader_election": ("false", False),
    "lease_name": ("other", "other"),
    "lease_namespace": ("ops", "ops"),
    "metrics_namespace_label": ("false", False),
    "otlp_endpoint": ("collector:4317", "collector:4317"),
    "otlp_protocol": ("http", "http"),
    "otlp_headers": ("x-token=abc", ("x-token=abc",)),
    "otlp_insecure": ("true", True),
    "otlp_certificate": ("/etc/ca.pem", "/etc/ca.pem"),
    "otlp_timeout_seconds": ("3", 3.0),
    "otlp_queue_spans": ("100", 100),
    "otlp_live_interval_seconds": ("0", 0.0),
}


def test_every_setting_has_an_option_in_the_table() -> None:
    fields = [field.name for field in dataclasses.fields(PodtrailSettings)]
    assert sorted(option.attribute for option in OPTIONS) == sorted(fields)
    assert sorted(OTHER_VALUES) == sorted(fields)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.flag)
def test_each_option_is_set_by_its_flag_and_by_its_variable(option: Option) -> None:
    text, value = OTHER_VALUES[option.attribute]
    if option.action == "store_true":
        argv = [f"--{option.flag}"]
    elif option.action is argparse.BooleanOptionalAction:
        argv = [f"--{option.flag}" if value else f"--no-{option.flag}"]
    else:
        argv = [f"--{option.flag}", text]
    base = {"PODTRAIL_LOG_FORMAT": "json"}  # not the terminal's choice
    assert getattr(parse_settings(argv, env=base), option.attribute) == value
    variable = "PODTRAIL_NAMESPACES" if option.attribute == "namespaces" else option.env_name
    if variable is not None:
        from_env = parse_settings([], env=base | {variable: text})
        assert getattr(from_env, option.attribute) == value
        assert variable in build_parser(base).format_help()
