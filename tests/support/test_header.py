"""The topic title, the header message and its buttons, and the buttons' callback codec."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.support import header
from tgrelay.support.header import Action, Press
from tgrelay.support.models import Customer, Ticket, TicketStatus
from tgrelay.support.sla import Clock, Metric

AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
TICKET = Ticket(
    id="tkt_0123456789abcdef",
    workspace_id="ws_1",
    number=17,
    desk_id="dsk_1",
    bot_id=1,
    customer_chat_id=42,
    customer=Customer(
        id=42, first_name="Ada", last_name="Lovelace", username="ada", language_code="en"
    ),
    subject="my order never arrived",
    status=TicketStatus.NEW,
    assignee_id=None,
    topic_chat_id=-100,
    topic_thread_id=None,
    header_message_id=None,
    header_version=0,
    resolution_note=None,
    created_at=AT,
    updated_at=AT,
    first_response_at=None,
    resolved_at=None,
    closed_at=None,
)


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("my order never arrived", "text", "my order never arrived"),
        (
            "one two three four five six seven eight nine",
            "text",
            "one two three four five six seven eight…",
        ),
        ("  spaced\nout  ", "text", "spaced out"),
        (None, "photo", "(photo)"),
        ("", "sticker", "(sticker)"),
    ],
)
def test_subjects_are_the_first_words(text: str | None, kind: str, expected: str) -> None:
    """A subject is the first eight words, or the media kind when there are none."""
    assert header.subject_of(text, kind) == expected


@pytest.mark.parametrize(
    ("status", "subject", "expected"),
    [
        (TicketStatus.NEW, "my order", "#17 Ada Lovelace · my order"),
        (TicketStatus.RESOLVED, "my order", "✅ #17 Ada Lovelace · my order"),
        (TicketStatus.CLOSED, "my order", "🔒 #17 Ada Lovelace · my order"),
        (TicketStatus.OPEN, "x" * 200, ("#17 Ada Lovelace · " + "x" * 200)[:127] + "…"),
    ],
)
def test_topic_titles(status: TicketStatus, subject: str, expected: str) -> None:
    """Titles carry number, name and subject, a mark once resolved, and fit in 128 chars."""
    title = header.topic_title(replace(TICKET, status=status, subject=subject))
    assert (title, len(title) <= 128) == (expected, True)


def test_the_header_text_shows_customer_and_ticket() -> None:
    """The header names the customer (name, username, id, language) and the ticket's fields."""
    ticket = replace(
        TICKET,
        status=TicketStatus.RESOLVED,
        first_response_at=AT,
        resolved_at=AT,
        resolution_note="refunded",
    )
    assert header.header_text(ticket, assignee="Bob") == (
        "🎫 Ticket #17 · resolved\n\n"
        "Customer: Ada Lovelace\nUsername: @ada\nTelegram id: 42\nLanguage: en\n\n"
        "Assignee: Bob\nCreated: 2026-12-01 09:30 UTC\nFirst response: 2026-12-01 09:30 UTC\n"
        "Resolved: 2026-12-01 09:30 UTC\nResolution: refunded"
    )


@pytest.mark.parametrize(
    ("status", "buttons"),
    [
        (
            TicketStatus.NEW,
            [("🙋 Assign to me", "me"), ("⏳ Pending", "pending"), ("✅ Resolve", "resolve")],
        ),
        (
            TicketStatus.OPEN,
            [("🙋 Assign to me", "me"), ("⏳ Pending", "pending"), ("✅ Resolve", "resolve")],
        ),
        (TicketStatus.PENDING, [("🙋 Assign to me", "me"), ("✅ Resolve", "resolve")]),
        (TicketStatus.RESOLVED, [("↩️ Reopen", "reopen")]),
        (TicketStatus.CLOSED, []),
    ],
)
def test_the_buttons_follow_the_status(
    status: TicketStatus, buttons: list[tuple[str, str]]
) -> None:
    """Each status shows the buttons of the moves it allows, each naming the ticket."""
    keyboard = header.header_keyboard(replace(TICKET, status=status))
    shown = [] if keyboard is None else [b for row in keyboard.rows for b in row]
    assert [(b.text, getattr(b, "callback_data", None)) for b in shown] == [
        (text, f"tkt:{action}:{TICKET.id}") for text, action in buttons
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("tkt:me:tkt_1", Press(action=Action.ASSIGN_ME, ticket_id="tkt_1")),
        ("tkt:resolve:tkt_1", Press(action=Action.RESOLVE, ticket_id="tkt_1")),
        ("tkt:pending:tkt_1", Press(action=Action.PENDING, ticket_id="tkt_1")),
        ("tkt:reopen:tkt_1", Press(action=Action.REOPEN, ticket_id="tkt_1")),
        ("tkt:explode:tkt_1", None),
        ("tkt:me:", None),
        ("ack:incident-17", None),
        ("tkt:me:tkt_1:extra", None),
        (None, None),
    ],
)
def test_callback_data_decodes(data: str | None, expected: Press | None) -> None:
    """Only well-formed header presses decode; every other callback data is not ours."""
    assert header.decode(data) == expected


def test_callback_data_round_trips_within_64_bytes() -> None:
    """Every action encodes a 40-character ticket id within Telegram's 64 bytes and back."""
    ticket_id = "tkt_" + "f" * 36
    encoded = [header.encode(action, ticket_id) for action in Action]
    assert [(len(e.encode()) <= 64, header.decode(e)) for e in encoded] == [
        (True, Press(action=action, ticket_id=ticket_id)) for action in Action
    ]


def _clock(**fields: object) -> Clock:
    values: dict[str, object] = {
        "metric": Metric.FIRST_RESPONSE,
        "started_at": AT,
        "due_at": AT + timedelta(hours=2),
        "paused": False,
        "met_at": None,
        "breached_at": None,
    }
    return Clock(**{**values, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("clock", "line"),
    [
        (_clock(), "⏱ First response: due 11:30 UTC (in 2 h)"),
        (_clock(due_at=AT + timedelta(minutes=5)), "⏱ First response: due 09:35 UTC (in 5 min)"),
        (
            _clock(metric=Metric.RESOLUTION, due_at=AT + timedelta(days=3)),
            "⏱ Resolution: due 2026-12-04 09:30 UTC (in 3 d)",
        ),
        (_clock(breached_at=AT - timedelta(minutes=1)), "⏱ First response: breached 09:29 UTC"),
        (_clock(met_at=AT), "⏱ First response: met 09:30 UTC"),
        (
            _clock(met_at=AT, breached_at=AT - timedelta(minutes=1)),
            "⏱ First response: met 09:30 UTC (late)",
        ),
        (_clock(due_at=None, paused=True), "⏱ First response: paused"),
        (_clock(due_at=None), None),
    ],
)
def test_an_sla_clock_reads_as_the_header_shows_it(clock: Clock, line: str | None) -> None:
    """Due with how soon, breached, met (late or not), paused; a stopped clock is not shown."""
    assert header.clock_line(clock, AT) == line


def test_the_header_ends_with_its_clocks() -> None:
    """The SLA clocks follow the first response line, stopped ones left out."""
    text = header.header_text(TICKET, assignee=None, clocks=[_clock(), _clock(due_at=None)], now=AT)
    assert text.endswith("First response: —\n⏱ First response: due 11:30 UTC (in 2 h)")
