"""The package's one clock: aware UTC datetimes and their Unix seconds."""

from datetime import datetime, timezone

UTC = timezone.utc


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def seconds(moment: datetime) -> float:
    """Unix seconds of a datetime (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def from_seconds(value: float) -> datetime:
    """The aware UTC datetime of Unix seconds."""
    return datetime.fromtimestamp(value, UTC)
