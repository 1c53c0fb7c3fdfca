"""The README's table of options is the operator's: every flag and variable, nothing gone."""

from __future__ import annotations

import re
from pathlib import Path

from podtrail.shell.settings import OPTIONS, PodtrailSettings

README = Path(__file__).resolve().parents[2] / "README.md"
CELL = r"(?:[^|\\]|\\.)*"  # a table cell: anything but an unescaped |
ROW = re.compile(
    rf"^\| `--(?P<flag>[a-z-]+){CELL}"
    rf"\| (?P<variable>`PODTRAIL_[A-Z_]+`|—){CELL}"
    rf"\| (?P<default>{CELL})\|"
)


def _rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in README.read_text().splitlines():
        found = ROW.match(line)
        if found:
            rows[found["flag"]] = (found["variable"].strip("`"), found["default"].strip())
    return rows


def test_every_option_has_a_row_and_every_row_an_option() -> None:
    documented = set(_rows())
    assert documented == {option.flag for option in OPTIONS}, (
        f"missing from the README: {sorted({o.flag for o in OPTIONS} - documented)}; "
        f"in the README but not an option: {sorted(documented - {o.flag for o in OPTIONS})}"
    )


def test_each_row_names_the_options_variable() -> None:
    rows = _rows()
    for option in OPTIONS:
        variable, _ = rows[option.flag]
        if option.flag == "namespace":
            assert variable == "PODTRAIL_NAMESPACES"  # comma-separated, split by parse_settings
        else:
            assert variable == (option.env_name or "—"), option.flag


def test_numeric_defaults_are_the_operators() -> None:
    defaults = PodtrailSettings()
    for option in OPTIONS:
        if option.kind not in (int, float):
            continue
        _, written = _rows()[option.flag]
        assert float(written.split()[0]) == float(getattr(defaults, option.attribute)), option.flag
