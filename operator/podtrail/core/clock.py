"""Time values as Kubernetes writes them: parsing, formatting and safe arithmetic.

The core never reads a clock; these helpers only convert and compare times it is given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_MAX_SECONDS = 10 * 366 * 24 * 3600.0


def parse_time(value: object) -> datetime | None:
    """Parse an RFC 3339 timestamp (``2025-01-02T03:04:05Z``, optional fraction) to UTC.

    Args:
        value: Anything; only strings in RFC 3339 form give a time.

    Returns:
        An aware UTC datetime, or None when the value is not a usable timestamp.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def format_time(value: datetime) -> str:
    """Format a time as RFC 3339 in UTC, with microseconds only when there are some."""
    if value.tzinfo is not UTC:
        try:
            value = value.astimezone(UTC)
        except (OverflowError, ValueError):
            value = value.replace(tzinfo=UTC)
    # isoformat (fraction only when there is one, "+00:00" last) is twice as fast as strftime,
    # and every entry of a record is formatted again on each of its writes.
    return value.isoformat()[:-6] + "Z"


def shift(value: datetime | None, seconds: float | None) -> datetime | None:
    """Add seconds to a time; None when either is missing or the result is out of range."""
    if value is None or seconds is None:
        return None
    if not -_MAX_SECONDS <= seconds <= _MAX_SECONDS:
        return None
    try:
        return value + timedelta(seconds=seconds)
    except OverflowError:
        return None


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end (may be negative), rounded to milliseconds."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two optional times."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two optional times."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
