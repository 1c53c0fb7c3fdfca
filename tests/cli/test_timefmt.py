"""How times and durations read."""

from __future__ import annotations

import pytest

from podtrail.cli.timefmt import age, gap, offset, parse_since


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "T+0.0s"), (12.34, "T+12.3s"), (59.9, "T+59.9s"), (59.96, "T+1m00s"), (245, "T+4m05s"),
     (7380, "T+2h03m"), (-1, "T-1.0s")],
)  # fmt: skip
def test_offset(value: float, text: str) -> None:
    assert offset(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0s"), (0.963, "0.96s"), (3, "3s"), (3.5, "3.5s"), (12.34, "12.3s"), (245, "4m05s"),
     (7380, "2h03m"), (273600, "3d04h"), (-0.5, "-0.5s")],
)  # fmt: skip
def test_gap(value: float, text: str) -> None:
    assert gap(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(45, "45s"), (119, "119s"), (312, "5m12s"), (600, "10m"), (2820, "47m"), (11040, "3h4m"),
     (82800, "23h"), (273600, "3d4h"), (120 * 86400, "120d"), (770 * 86400, "2y40d")],
)  # fmt: skip
def test_age_reads_like_kubectl(value: float, text: str) -> None:
    assert age(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
     ("500ms", 0.5), (" 2H ", 7200)],
)  # fmt: skip
def test_since(text: str, value: float) -> None:
    assert parse_since(text) == value


@pytest.mark.parametrize("text", ["", "0", "0s", "ten minutes", "10x", "m10", "1h 30m", "-5m"])
def test_since_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_since(text)
