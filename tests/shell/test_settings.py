import pytest

from podtrail.shell.settings import PodtrailSettings, parse_settings


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
