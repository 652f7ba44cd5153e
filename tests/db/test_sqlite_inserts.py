"""Hand-bound SQLite inserts store values exactly as SQLAlchemy's own binding would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from tgrelay.db.types import Timestamp, sqlite_timestamp_text

SQLALCHEMY_BINDING = Timestamp().dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
ZONES = st.builds(
    timezone, st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timedelta(minutes=m))
)


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 30), timezones=ZONES))
def test_timestamp_text_is_sqlalchemys(value: datetime) -> None:
    assert SQLALCHEMY_BINDING is not None
    assert sqlite_timestamp_text(value) == SQLALCHEMY_BINDING(value)


def test_whole_seconds_keep_their_microseconds() -> None:
    # datetime.isoformat drops a zero fraction unless told not to; the queue compares text.
    assert sqlite_timestamp_text(datetime(2026, 11, 21, 12, tzinfo=UTC)) == (
        "2026-11-21 12:00:00.000000"
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_timestamp_text(datetime(2026, 11, 21, 12))
