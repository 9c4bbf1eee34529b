"""Conversion between aware datetimes and the store's INTEGER microseconds since epoch.

Integers sort and compare in SQL, and microseconds are exactly what a ``datetime``
holds, so a round trip through the store returns an equal datetime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime.

    Raises:
        ValueError: ``moment`` is naive; its instant would be a guess.
    """
    if moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}; pass an aware one (tzinfo=UTC)")
    return (moment - _EPOCH) // _ONE_MICROSECOND


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime ``micros`` microseconds after the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def optional_to_micros(moment: datetime | None) -> int | None:
    """``to_micros`` that passes ``None`` (a NULL column) through."""
    return None if moment is None else to_micros(moment)


def optional_from_micros(micros: int | None) -> datetime | None:
    """``from_micros`` that passes ``None`` (a NULL column) through."""
    return None if micros is None else from_micros(micros)
