"""Times and durations as the plugin prints them: T+ offsets, gaps, ages, `--since` values."""

from __future__ import annotations

import re
from datetime import datetime

_SINCE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end (negative when end is earlier); None when either is unknown."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def offset(value: float) -> str:
    """A time relative to the pod's creation: T+0.0s, T+12.3s, T+4m05s, T+2h03m, T-1.0s."""
    sign = "-" if value < 0 else "+"
    value = abs(value)
    if value < 59.95:
        return f"T{sign}{value:.1f}s"
    whole = round(value)
    if whole < 3600:
        return f"T{sign}{whole // 60}m{whole % 60:02d}s"
    return f"T{sign}{whole // 3600}h{whole % 3600 // 60:02d}m"


def gap(value: float) -> str:
    """A duration: 0s, 0.96s, 3s, 12.3s, 4m05s, 2h03m, 3d04h (negative with a minus sign)."""
    if value < 0:
        return "-" + gap(-value)
    if value < 10:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        return f"{text}s"
    if value < 59.95:
        return f"{value:.1f}".rstrip("0").rstrip(".") + "s"
    whole = round(value)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def age(value: float) -> str:
    """Time elapsed, in kubectl's AGE style: 45s, 5m12s, 47m, 3h4m, 23h, 3d4h, 120d, 2y40d."""
    whole = max(0, int(value))
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if whole < 120:
        return f"{whole}s"
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    return f"{days // 365}y{days % 365}d"


def parse_since(text: str) -> float:
    """Seconds of a `--since` value: 90s, 10m, 2h, 1d, 1h30m (a bare number is seconds).

    Raises:
        ValueError: the value is not a positive duration.
    """
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        total = float(text)
    else:
        parts = _SINCE.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 10m, 2h, 1d, 1h30m)")
        total = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if total <= 0:
        raise ValueError(f"not a positive duration: {text!r}")
    return total
