"""What a ticket's topic shows of it: the title, the header message and its buttons, and
the codec of those buttons' callback data. Pure."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tgrelay.support.models import Ticket, TicketStatus
from tgrelay.support.sla import Clock
from tgrelay.telegram.outbox.messages import (
    MAX_TOPIC_NAME_CHARS,
    CallbackButton,
    Keyboard,
)

RESOLVED_MARK = "✅ "
CLOSED_MARK = "🔒 "
BUSINESS_MARK = "💼 "  # a ticket of a Telegram Business chat
SUBJECT_WORDS = 8  # the first words of the first message a title and subject show
SUBJECT_CHARS = 200  # tickets.subject's width
CALLBACK_PREFIX = "tkt"


class Action(enum.StrEnum):
    """What a header button does (its callback data's middle part)."""

    ASSIGN_ME = "me"
    PENDING = "pending"
    RESOLVE = "resolve"
    REOPEN = "reopen"


@dataclass(frozen=True, kw_only=True)
class Press:
    """A header button's press, decoded."""

    action: Action
    ticket_id: str


def subject_of(text: str | None, kind: str) -> str:
    """A ticket's subject: the first words of its first message (its kind for bare media)."""
    words = (text or "").split()
    if not words:
        return f"({kind})"
    subject = " ".join(words[:SUBJECT_WORDS])
    if len(words) > SUBJECT_WORDS:
        subject += "…"
    return subject[:SUBJECT_CHARS]


def topic_title(ticket: Ticket) -> str:
    """`#<number> <customer name> · <first words>`, marked once resolved or closed and when
    from a business chat, cut to Telegram's 128 characters."""
    mark = {TicketStatus.RESOLVED: RESOLVED_MARK, TicketStatus.CLOSED: CLOSED_MARK}.get(
        ticket.status, ""
    )
    if ticket.business_connection_id is not None:
        mark += BUSINESS_MARK
    title = f"{mark}#{ticket.number} {ticket.customer.name} · {ticket.subject}"
    if len(title) > MAX_TOPIC_NAME_CHARS:
        title = title[: MAX_TOPIC_NAME_CHARS - 1] + "…"
    return title


def header_text(
    ticket: Ticket,
    *,
    assignee: str | None,
    clocks: Sequence[Clock] = (),
    now: datetime | None = None,
    channel: Sequence[str] = (),
) -> str:
    """The header message: who the customer is and where the ticket stands (`assignee`: the
    assigned agent's name as the desk knows it; `clocks`: its SLA clocks as of `now`;
    `channel`: a business chat's lines, support.business_rules.header_lines)."""
    customer = ticket.customer
    lines = [
        f"🎫 Ticket #{ticket.number} · {ticket.status.value}",
        "",
        f"Customer: {customer.name}",
        f"Username: @{customer.username}" if customer.username else "Username: —",
        f"Telegram id: {customer.id}",
        f"Language: {customer.language_code or '—'}",
        *channel,
        "",
        f"Assignee: {assignee or 'nobody'}",
        f"Created: {_when(ticket.created_at)}",
        f"First response: {_when(ticket.first_response_at)}",
    ]
    for clock in clocks:
        line = clock_line(clock, now or ticket.updated_at)
        if line is not None:
            lines.append(line)
    if ticket.resolved_at is not None:
        lines.append(f"Resolved: {_when(ticket.resolved_at)}")
    if ticket.resolution_note:
        lines.append(f"Resolution: {ticket.resolution_note}")
    if ticket.closed_at is not None:
        lines.append(f"Closed: {_when(ticket.closed_at)}")
    return "\n".join(lines)


def clock_line(clock: Clock, now: datetime) -> str | None:
    """An SLA clock as the header shows it, e.g. "⏱ First response: due 14:30 UTC (in 2 h)";
    None for a clock stopped before it fell due (the ticket was resolved)."""
    name = clock.metric.value.replace("_", " ").capitalize()
    if clock.met_at is not None:
        late = " (late)" if clock.breached_at is not None else ""
        return f"⏱ {name}: met {_short(clock.met_at, now)}{late}"
    if clock.breached_at is not None:
        return f"⏱ {name}: breached {_short(clock.breached_at, now)}"
    if clock.paused:
        return f"⏱ {name}: paused"
    if clock.due_at is None:
        return None
    return f"⏱ {name}: due {_short(clock.due_at, now)} (in {_span(clock.due_at - now)})"


def _short(at: datetime, now: datetime) -> str:
    """The time alone on the day of `now`, with the date otherwise (UTC)."""
    if at.date() == now.date():
        return at.strftime("%H:%M UTC")
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _span(delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def header_keyboard(ticket: Ticket) -> Keyboard | None:
    """The buttons a ticket's status allows (none once closed)."""
    if ticket.status is TicketStatus.CLOSED:
        return None
    if ticket.status is TicketStatus.RESOLVED:
        return Keyboard(rows=((_button("↩️ Reopen", Action.REOPEN, ticket.id),),))
    row = [_button("🙋 Assign to me", Action.ASSIGN_ME, ticket.id)]
    if ticket.status is not TicketStatus.PENDING:
        row.append(_button("⏳ Pending", Action.PENDING, ticket.id))
    row.append(_button("✅ Resolve", Action.RESOLVE, ticket.id))
    return Keyboard(rows=(tuple(row),))


def encode(action: Action, ticket_id: str) -> str:
    return f"{CALLBACK_PREFIX}:{action.value}:{ticket_id}"


def decode(data: str | None) -> Press | None:
    """A header button's press, or None for any other callback data."""
    if data is None:
        return None
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != CALLBACK_PREFIX or not parts[2]:
        return None
    try:
        action = Action(parts[1])
    except ValueError:
        return None
    return Press(action=action, ticket_id=parts[2])


def _button(text: str, action: Action, ticket_id: str) -> CallbackButton:
    return CallbackButton(text=text, callback_data=encode(action, ticket_id))


def _when(at: datetime | None) -> str:
    return "—" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")
