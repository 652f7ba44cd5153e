"""Properties of the SLA calculator over generated schedules, instants and pauses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tgrelay.support import sla
from tgrelay.support.models import TicketStatus as S
from tgrelay.support.sla import BusinessHours, History, Policy

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]
# Around the 2026 DST changes of both hemispheres.
INSTANTS = st.datetimes(
    min_value=datetime(2026, 3, 1), max_value=datetime(2026, 11, 15), timezones=st.just(UTC)
)
SECONDS = st.integers(min_value=0, max_value=2 * 24 * 3600)


@st.composite
def schedules(draw: st.DrawFn) -> BusinessHours:
    weekly: dict[int, tuple[tuple[int, int], ...]] = {}
    for day in draw(st.sets(st.integers(0, 6), min_size=1)):
        cuts = sorted(draw(st.sets(st.integers(0, 96), min_size=2, max_size=6)))
        pairs = [(cuts[i] * 15, cuts[i + 1] * 15) for i in range(0, len(cuts) - 1, 2)]
        weekly[day] = tuple(pairs)
    start = datetime(2026, 3, 1).date()
    holidays = {start + timedelta(days=n) for n in draw(st.sets(st.integers(0, 260), max_size=20))}
    return BusinessHours(
        timezone=draw(st.sampled_from(ZONES)), weekly=weekly, holidays=frozenset(holidays)
    )


@settings(max_examples=150, deadline=None)
@given(schedules(), INSTANTS, SECONDS, SECONDS)
def test_more_business_time_is_due_later(
    hours: BusinessHours, start: datetime, a: int, b: int
) -> None:
    """Adding more business seconds never gives an earlier instant."""
    low, high = sorted((a, b))
    assert sla.add_business(start, low, hours) <= sla.add_business(start, high, hours)


@settings(max_examples=150, deadline=None)
@given(schedules(), INSTANTS, SECONDS)
def test_adding_then_measuring_round_trips(
    hours: BusinessHours, start: datetime, seconds: int
) -> None:
    """The business time between an instant and it plus N business seconds is N."""
    due = sla.add_business(start, seconds, hours)
    assert due >= start
    assert sla.business_between(start, due, hours) == seconds


@settings(max_examples=100, deadline=None)
@given(schedules(), INSTANTS, SECONDS)
def test_the_result_is_inside_business_hours(
    hours: BusinessHours, start: datetime, seconds: int
) -> None:
    """A due time reached by a positive amount lies within or at the end of an opening."""
    due = sla.add_business(start, seconds + 1, hours)
    opens, closes = next(sla.openings(hours, due - timedelta(microseconds=1)))
    assert opens < due <= closes


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.none(), schedules()),
    st.integers(1, 2 * 24 * 60),
    st.integers(0, 3 * 24 * 60),
    st.integers(1, 2 * 24 * 60),
)
def test_a_pause_never_brings_the_due_time_earlier(
    hours: BusinessHours | None, target_minutes: int, pause_at: int, pause_for: int
) -> None:
    """A pending spell delays the first response's due time by at most its own length."""
    created = datetime(2026, 3, 27, 8, tzinfo=UTC)
    policy = Policy(first_response=target_minutes * 60, hours=hours)
    resumed = created + timedelta(minutes=pause_at + pause_for)
    plain = History(created_at=created, statuses=((created, S.NEW),), messages=())
    paused = History(
        created_at=created,
        statuses=(
            (created, S.NEW),
            (created + timedelta(minutes=pause_at), S.PENDING),
            (resumed, S.OPEN),
        ),
        messages=(),
    )
    before = sla.clocks(plain, policy, resumed)[0].due_at
    after = sla.clocks(paused, policy, resumed)[0].due_at
    assert before is not None
    assert after is not None
    assert before <= after
    if hours is None:
        assert after - before <= timedelta(minutes=pause_for)
