"""The ticket state machine, and where a customer's message goes: pure, with the clock passed in.

    new ──first agent reply──▶ open ◀──customer writes── pending
     │                          │ ▲                         ▲
     │                          │ └──────/pending───────────┘ (open → pending)
     └────────────┬─────────────┘
                  ▼
   /resolve, button ──▶ resolved ──customer writes within the window, /reopen──▶ open
                           │
   the window ends, /close ▼
                        closed (final: the customer's next message opens a new ticket)

`new`, `open` and `pending` may also be resolved or closed directly (spam, duplicates).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from tgrelay.support.models import TicketStatus

S = TicketStatus

ALLOWED: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.OPEN, S.PENDING, S.RESOLVED, S.CLOSED}),
    S.OPEN: frozenset({S.PENDING, S.RESOLVED, S.CLOSED}),
    S.PENDING: frozenset({S.OPEN, S.RESOLVED, S.CLOSED}),
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
}


@dataclass(frozen=True, kw_only=True)
class Refused:
    """A transition the state machine does not allow, and why (said in the topic or the API)."""

    reason: str


def check(current: TicketStatus, target: TicketStatus) -> Refused | None:
    """None when `current → target` is allowed, else why not."""
    if target in ALLOWED[current]:
        return None
    if current is target:
        return Refused(reason=f"the ticket is {current} already")
    if current is S.CLOSED:
        return Refused(
            reason="the ticket is closed, which is final: "
            "the customer's next message opens a new ticket"
        )
    if target is S.NEW:
        return Refused(reason="a ticket cannot go back to new once it was answered or changed")
    if current is S.RESOLVED and target is S.PENDING:
        return Refused(
            reason="a resolved ticket must be reopened before it can wait on the customer"
        )
    return Refused(reason=f"a {current} ticket cannot become {target}")  # pragma: no cover


class CustomerRoute(enum.Enum):
    """What a customer's private message does to their latest ticket."""

    APPEND = "append"  # it joins the ticket as is (new, open)
    BACK_TO_OPEN = "back_to_open"  # pending → open: the customer answered
    REOPEN = "reopen"  # resolved within the reopen window → open
    NEW_TICKET = "new_ticket"  # no ticket, closed, or resolved beyond the window


def route_customer_message(
    latest: TicketStatus | None,
    *,
    resolved_at: datetime | None,
    reopen_window: timedelta,
    now: datetime,
) -> CustomerRoute:
    """Where a customer's message goes, given their latest ticket's status (None: none yet)."""
    if latest is None or latest is S.CLOSED:
        return CustomerRoute.NEW_TICKET
    if latest is S.PENDING:
        return CustomerRoute.BACK_TO_OPEN
    if latest is S.RESOLVED:
        if resolved_at is not None and now - resolved_at <= reopen_window:
            return CustomerRoute.REOPEN
        return CustomerRoute.NEW_TICKET
    return CustomerRoute.APPEND


def after_agent_reply(current: TicketStatus) -> TicketStatus | None:
    """The status an agent's relayed reply moves a ticket to (None: it stays)."""
    return S.OPEN if current is S.NEW else None


def closes_at(resolved_at: datetime, reopen_window: timedelta) -> datetime:
    """When a resolved ticket becomes closed by itself."""
    return resolved_at + reopen_window
