"""The ticket state machine and the routing of a customer's message, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.support import rules
from tgrelay.support.models import TicketStatus as S
from tgrelay.support.rules import CustomerRoute

EVERY_PAIR = [(current, target) for current in S for target in S]
ALLOWED = {
    (S.NEW, S.OPEN),
    (S.NEW, S.PENDING),
    (S.NEW, S.RESOLVED),
    (S.NEW, S.CLOSED),
    (S.OPEN, S.PENDING),
    (S.OPEN, S.RESOLVED),
    (S.OPEN, S.CLOSED),
    (S.PENDING, S.OPEN),
    (S.PENDING, S.RESOLVED),
    (S.PENDING, S.CLOSED),
    (S.RESOLVED, S.OPEN),
    (S.RESOLVED, S.CLOSED),
}


@pytest.mark.parametrize(("current", "target"), EVERY_PAIR)
def test_only_the_drawn_transitions_are_allowed(current: S, target: S) -> None:
    """Each of the 25 status pairs is allowed exactly when the docstring's drawing has it."""
    refused = rules.check(current, target)
    assert (refused is None) == ((current, target) in ALLOWED)


@pytest.mark.parametrize(
    ("current", "target", "reason"),
    [
        (S.OPEN, S.OPEN, "the ticket is open already"),
        (
            S.CLOSED,
            S.OPEN,
            "the ticket is closed, which is final: the customer's next message opens a new ticket",
        ),
        (S.PENDING, S.NEW, "a ticket cannot go back to new once it was answered or changed"),
        (
            S.RESOLVED,
            S.PENDING,
            "a resolved ticket must be reopened before it can wait on the customer",
        ),
    ],
)
def test_a_refusal_says_why(current: S, target: S, reason: str) -> None:
    """A refused transition carries the sentence the topic or the API answers with."""
    assert rules.check(current, target) == rules.Refused(reason=reason)


NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


@pytest.mark.parametrize(
    ("latest", "resolved_at", "route"),
    [
        (None, None, CustomerRoute.NEW_TICKET),
        (S.NEW, None, CustomerRoute.APPEND),
        (S.OPEN, None, CustomerRoute.APPEND),
        (S.PENDING, None, CustomerRoute.BACK_TO_OPEN),
        (S.RESOLVED, NOW - WEEK, CustomerRoute.REOPEN),  # the window's last instant
        (S.RESOLVED, NOW - timedelta(hours=1), CustomerRoute.REOPEN),
        (S.RESOLVED, NOW - WEEK - timedelta(seconds=1), CustomerRoute.NEW_TICKET),
        (S.CLOSED, NOW - timedelta(hours=1), CustomerRoute.NEW_TICKET),
    ],
)
def test_where_a_customer_message_goes(
    latest: S | None, resolved_at: datetime | None, route: CustomerRoute
) -> None:
    """Live tickets take it (a pending one becomes open), a resolved one reopens within the
    window, and anything else opens a new ticket."""
    assert (
        rules.route_customer_message(latest, resolved_at=resolved_at, reopen_window=WEEK, now=NOW)
        is route
    )


@pytest.mark.parametrize(
    ("current", "after"),
    [(S.NEW, S.OPEN), (S.OPEN, None), (S.PENDING, None), (S.RESOLVED, None)],
)
def test_an_agent_reply_opens_only_a_new_ticket(current: S, after: S | None) -> None:
    """The first agent reply makes a new ticket open; other statuses stay as they are."""
    assert rules.after_agent_reply(current) is after


def test_a_resolved_ticket_closes_when_its_window_ends() -> None:
    """The closing time is the resolution time plus the desk's reopen window."""
    assert rules.closes_at(NOW, WEEK) == NOW + WEEK
