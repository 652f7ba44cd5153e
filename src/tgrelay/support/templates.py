"""Canned replies' templates: the sandboxed dialect of tgrelay.templates over a ticket's
variables (customer, agent, ticket, desk)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tgrelay import templates
from tgrelay.support.models import Agent, Desk, Ticket

# Every variable and its attributes; a name a template uses must be one of these.
VARIABLES: dict[str, tuple[str, ...] | None] = {
    "customer": ("id", "first_name", "last_name", "username", "language_code", "name"),
    "agent": ("name", "username", "external_id"),
    "ticket": ("id", "number", "status", "subject"),
    "desk": ("name",),
}
KNOWN = templates.known(VARIABLES)
MAX_TEXT_LENGTH = templates.MAX_TEXT_LENGTH
TemplateInvalid = templates.TemplateInvalid
RenderFailed = templates.RenderFailed


def validate(text: str) -> None:
    """Raise TemplateInvalid unless `text` parses and uses only known variables."""
    templates.validate(text, VARIABLES)


def render(text: str, context: Mapping[str, Any]) -> str:
    """The template rendered with `context` (see `context`); RenderFailed saying why not."""
    return templates.render(text, context, VARIABLES, kind="canned replies")


def context(ticket: Ticket, desk: Desk, agent: Agent | None) -> dict[str, Any]:
    """The variables for a ticket's reply; an agent's fields are empty when none writes."""
    customer = ticket.customer
    return {
        "customer": {
            "id": customer.id,
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "username": customer.username,
            "language_code": customer.language_code,
            "name": customer.name,
        },
        "agent": {
            "name": agent.name if agent else None,
            "username": agent.username if agent else None,
            "external_id": agent.external_id if agent else None,
        },
        "ticket": {
            "id": ticket.id,
            "number": ticket.number,
            "status": ticket.status.value,
            "subject": ticket.subject,
        },
        "desk": {"name": desk.name},
    }
