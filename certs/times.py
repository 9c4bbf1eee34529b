"""The one place that turns an optional injected `now` into an aware UTC datetime.

Certificate times are compared across machines, so every timestamp in this package is
timezone-aware UTC; a naive datetime is a bug at the call site, not a local time.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["resolve_now"]


def resolve_now(now: datetime | None) -> datetime:
    """Return `now` as aware UTC, or the current time when `now` is None.

    Raises:
        ValueError: `now` is naive.
    """
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {now.isoformat()}")
    return now.astimezone(UTC)
