"""The SLA calculator as tables: business-time arithmetic over schedules, holidays and DST
changes, and each metric's due, met, paused and breached times."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tgrelay.support import sla
from tgrelay.support.models import Direction as Dir
from tgrelay.support.models import TicketStatus as S
from tgrelay.support.sla import BusinessHours, Clock, History, Metric, Policy

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600
NINE_TO_FIVE = dict.fromkeys(range(5), ((9 * 60, 17 * 60),))
OFFICE = BusinessHours(timezone="Europe/Berlin", weekly=NINE_TO_FIVE)
ALL_DAY = dict.fromkeys(range(7), ((0, 24 * 60),))


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).astimezone(UTC)


@pytest.mark.parametrize(
    ("start", "seconds", "due"),
    [
        ("2026-12-01 10:00", 2 * HOUR, "2026-12-01 12:00"),  # Tuesday, inside hours
        ("2026-12-04 16:00", 2 * HOUR, "2026-12-07 10:00"),  # Friday → Monday
        ("2026-12-05 11:00", 30 * 60, "2026-12-07 09:30"),  # opened on a Saturday
        ("2026-12-01 07:00", 0, "2026-12-01 09:00"),  # before opening: starts at the opening
        ("2026-12-01 17:00", HOUR, "2026-12-02 10:00"),  # at closing: the next day
        ("2026-12-01 10:00", 8 * HOUR, "2026-12-02 10:00"),  # a whole business day
    ],
)
def test_adding_business_time_skips_closed_hours(start: str, seconds: int, due: str) -> None:
    """Business seconds added to an instant land where a Mon–Fri 9–17 office reaches them."""
    assert sla.add_business(berlin(start), seconds, OFFICE) == berlin(due)


def test_holidays_are_skipped() -> None:
    """Christmas on a Friday: Thursday 16:00 plus two business hours is Monday 10:00."""
    hours = BusinessHours(
        timezone="Europe/Berlin", weekly=NINE_TO_FIVE, holidays=frozenset({date(2026, 12, 25)})
    )
    assert sla.add_business(berlin("2026-12-24 16:00"), 2 * HOUR, hours) == berlin(
        "2026-12-28 10:00"
    )
    assert sla.business_between(berlin("2026-12-24 16:00"), berlin("2026-12-28 10:00"), hours) == (
        2 * HOUR
    )


@pytest.mark.parametrize(
    ("zone", "day", "hours"),
    [
        ("Europe/Berlin", date(2026, 3, 29), 23),
        ("Europe/Berlin", date(2026, 10, 25), 25),
        ("America/New_York", date(2026, 3, 8), 23),
        ("America/New_York", date(2026, 11, 1), 25),
        ("America/New_York", date(2026, 11, 2), 24),
    ],
)
def test_a_whole_day_lasts_what_the_clock_change_makes_it(zone: str, day: date, hours: int) -> None:
    """A 00:00–24:00 range holds 23 h on a spring-forward day and 25 h on a fall-back one."""
    schedule = BusinessHours(timezone=zone, weekly=ALL_DAY)
    tz = ZoneInfo(zone)
    start = datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    assert sla.business_between(start, end.astimezone(UTC), schedule) == hours * HOUR


def test_an_office_day_across_a_dst_change_keeps_its_wall_times() -> None:
    """New York's 9–17 on the Monday after the spring change opens at 13:00 UTC, not 14:00."""
    schedule = BusinessHours(timezone="America/New_York", weekly=NINE_TO_FIVE)
    friday_close = datetime(2026, 3, 6, 17, tzinfo=NEW_YORK).astimezone(UTC)
    due = sla.add_business(friday_close, HOUR, schedule)
    assert due == datetime(2026, 3, 9, 14, tzinfo=UTC)  # 10:00 EDT
    assert due.astimezone(NEW_YORK).hour == 10


def test_a_schedule_without_openings_is_said() -> None:
    """A schedule whose only day is always a holiday has no business time to add."""
    hours = BusinessHours(timezone="UTC", weekly={})
    with pytest.raises(sla.NoOpening):
        sla.add_business(datetime(2026, 1, 1, tzinfo=UTC), 1, hours)


T0 = datetime(2026, 12, 1, 10, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def history(
    statuses: list[tuple[int, S]] | None = None, messages: list[tuple[int, Dir]] | None = None
) -> History:
    return History(
        created_at=T0,
        statuses=((T0, S.NEW), *((at(m), s) for m, s in statuses or [])),
        messages=tuple((at(m), d) for m, d in messages or [(0, Dir.CUSTOMER)]),
    )


POLICY = Policy(first_response=HOUR, next_response=30 * 60, resolution=8 * HOUR)


def clock(
    metric: Metric,
    started: int,
    due: int | None,
    *,
    met: int | None = None,
    breached: bool = False,
    paused: bool = False,
) -> Clock:
    return Clock(
        metric=metric,
        started_at=at(started),
        due_at=None if due is None else at(due),
        paused=paused,
        met_at=None if met is None else at(met),
        breached_at=at(due) if breached and due is not None else None,
    )


def test_a_new_ticket_has_its_first_response_and_resolution_clocks_running() -> None:
    """Right after opening: first response due in an hour, resolution in eight."""
    assert sla.clocks(history(), POLICY, at(1)) == [
        clock(Metric.FIRST_RESPONSE, 0, 60),
        clock(Metric.RESOLUTION, 0, 480),
    ]


def test_an_unanswered_ticket_past_due_is_breached() -> None:
    """At 61 minutes without a reply the first response is breached at its due time."""
    assert sla.clocks(history(), POLICY, at(61))[0] == clock(
        Metric.FIRST_RESPONSE, 0, 60, breached=True
    )


def test_a_late_answer_is_met_and_breached() -> None:
    """A reply at 90 minutes meets the first response but after its due time."""
    found = sla.clocks(
        history([(90, S.OPEN)], [(0, Dir.CUSTOMER), (90, Dir.AGENT)]), POLICY, at(100)
    )
    assert found[0] == clock(Metric.FIRST_RESPONSE, 0, 60, met=90, breached=True)


def test_pending_pauses_the_clock() -> None:
    """Twenty minutes, then forty pending, then open again: due at 100 minutes, not 60."""
    found = sla.clocks(history([(20, S.PENDING), (60, S.OPEN)]), POLICY, at(61))
    assert found[0] == clock(Metric.FIRST_RESPONSE, 0, 100)


def test_a_paused_clock_has_no_due_time() -> None:
    """While pending the clock is paused: no due time, and no breach though an hour passed."""
    found = sla.clocks(history([(20, S.PENDING)]), POLICY, at(120))
    assert found[0] == clock(Metric.FIRST_RESPONSE, 0, None, paused=True)


def test_a_breach_before_the_pause_stays() -> None:
    """Pending at 70 minutes does not undo the breach at 60."""
    found = sla.clocks(history([(70, S.PENDING)]), POLICY, at(80))
    assert found[0] == clock(Metric.FIRST_RESPONSE, 0, 60, breached=True, paused=True)


def test_only_the_policys_pause_statuses_pause() -> None:
    """With no pause statuses, pending does not stop the clock."""
    policy = Policy(first_response=HOUR, pause_statuses=frozenset())
    found = sla.clocks(history([(20, S.PENDING)]), policy, at(30))
    assert found == [clock(Metric.FIRST_RESPONSE, 0, 60)]


def test_next_response_runs_from_the_customer_message_that_waits() -> None:
    """After the first reply, the customer's two messages start one run, met by the reply."""
    messages = [
        (0, Dir.CUSTOMER),
        (10, Dir.AGENT),
        (20, Dir.CUSTOMER),
        (25, Dir.CUSTOMER),
        (40, Dir.AGENT),
    ]
    found = sla.runs(history([(10, S.OPEN)], messages), POLICY, at(45))
    assert found == [
        clock(Metric.FIRST_RESPONSE, 0, 60, met=10),
        clock(Metric.NEXT_RESPONSE, 20, 50, met=40),
        clock(Metric.RESOLUTION, 0, 480),
    ]


def test_each_waiting_message_starts_a_run_and_the_latest_is_the_clock() -> None:
    """Two exchanges: two next_response runs; `clocks` shows the unanswered, breached one."""
    messages = [
        (0, Dir.CUSTOMER),
        (5, Dir.AGENT),
        (10, Dir.CUSTOMER),
        (15, Dir.AGENT),
        (20, Dir.CUSTOMER),
    ]
    found = sla.runs(history([(5, S.OPEN)], messages), POLICY, at(60))
    assert [c for c in found if c.metric is Metric.NEXT_RESPONSE] == [
        clock(Metric.NEXT_RESPONSE, 10, 40, met=15),
        clock(Metric.NEXT_RESPONSE, 20, 50, breached=True),
    ]
    assert sla.clocks(history([(5, S.OPEN)], messages), POLICY, at(60))[1] == found[2]


def test_a_reply_in_the_same_instant_follows_the_message_it_answers() -> None:
    """Messages in one instant count in their order: the reply meets the first response
    and no next_response run starts from the message it answered."""
    messages = [(0, Dir.CUSTOMER), (0, Dir.AGENT), (0, Dir.CUSTOMER), (0, Dir.AGENT)]
    found = sla.runs(history([(0, S.OPEN)], messages), POLICY, at(1))
    assert found == [
        clock(Metric.FIRST_RESPONSE, 0, 60, met=0),
        clock(Metric.NEXT_RESPONSE, 0, 30, met=0),
        clock(Metric.RESOLUTION, 0, 480),
    ]


def test_resolving_meets_resolution_and_stops_the_rest() -> None:
    """Resolved unanswered at 30 minutes: resolution met, first response stopped unbreached."""
    found = sla.clocks(history([(30, S.RESOLVED), (40, S.CLOSED)]), POLICY, at(600))
    assert found == [
        clock(Metric.FIRST_RESPONSE, 0, None),
        clock(Metric.RESOLUTION, 0, 480, met=30),
    ]


def test_a_reopened_ticket_does_not_count_its_resolved_time() -> None:
    """Resolved from 60 to 120 minutes then reopened: resolution falls due an hour later."""
    found = sla.clocks(history([(60, S.RESOLVED), (120, S.OPEN)]), POLICY, at(130))
    assert found[-1] == clock(Metric.RESOLUTION, 0, 540)


def test_untracked_metrics_have_no_clock() -> None:
    """A policy with only a resolution target shows only that clock."""
    assert sla.clocks(history(), Policy(resolution=HOUR), at(1)) == [
        clock(Metric.RESOLUTION, 0, 60)
    ]


def test_business_hours_start_the_clock_at_the_next_opening() -> None:
    """A ticket opened on Saturday with a 1 h first response target is due Monday 10:00."""
    created = berlin("2026-12-05 11:00")
    found = sla.clocks(
        History(created_at=created, statuses=((created, S.NEW),), messages=()),
        Policy(first_response=HOUR, hours=OFFICE),
        created + timedelta(minutes=5),
    )
    assert [c.due_at for c in found] == [berlin("2026-12-07 10:00")]
