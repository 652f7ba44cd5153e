"""support.templates: what validates, what renders, and every sandbox escape refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tgrelay.support import templates
from tgrelay.support.models import Agent, Assignment, Customer, Desk, Ticket, TicketStatus

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
KNOWN = (
    "customer.id, customer.first_name, customer.last_name, customer.username, "
    "customer.language_code, customer.name, agent.name, agent.username, agent.external_id, "
    "ticket.id, ticket.number, ticket.status, ticket.subject, desk.name"
)
DESK = Desk(
    id="dsk_1",
    workspace_id="ws_1",
    bot_id=7,
    connection_id="conn_1",
    name="Billing",
    assignment=Assignment.CLAIM_ON_REPLY,
    reopen_window_seconds=604800,
    greeting_text=None,
    closing_text=None,
    created_at=AT,
    updated_at=AT,
)
TICKET = Ticket(
    id="tkt_1",
    workspace_id="ws_1",
    number=42,
    desk_id="dsk_1",
    bot_id=7,
    customer_chat_id=5551234,
    customer=Customer(
        id=5551234, first_name="Alice", last_name="Liddell", username=None, language_code="en"
    ),
    subject="Card declined",
    status=TicketStatus.OPEN,
    assignee_id=99,
    topic_chat_id=-1003456789012,
    topic_thread_id=3,
    header_message_id=4,
    header_version=1,
    resolution_note=None,
    created_at=AT,
    updated_at=AT,
    first_response_at=None,
    resolved_at=None,
    closed_at=None,
)
AGENT = Agent(
    workspace_id="ws_1",
    telegram_user_id=99,
    name="Bob",
    username="bob_ops",
    external_id="E-7",
    capacity=None,
    active=True,
    last_assigned_at=None,
    created_at=AT,
    updated_at=AT,
)
CONTEXT = templates.context(TICKET, DESK, AGENT)


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("Hi {{ customer.first_name }}!", "Hi Alice!"),
        (
            "{{ customer.name }} ({{ customer.id }}, {{ customer.language_code }})",
            "Alice Liddell (5551234, en)",
        ),
        ("@{{ customer.username }}", "@"),  # missing fields print as nothing
        (
            "{{ agent.name }} / {{ agent.username }} / {{ agent.external_id }}",
            "Bob / bob_ops / E-7",
        ),
        (
            "#{{ ticket.number }} {{ ticket.id }} {{ ticket.status }}: {{ ticket.subject }}",
            "#42 tkt_1 open: Card declined",
        ),
        ("{{ desk.name }} team", "Billing team"),
        (
            "{% if customer.username %}@{{ customer.username }}{% else %}{{ customer.first_name }}"
            "{% endif %}",
            "Alice",
        ),
        ("{% for part in ticket.subject.split() %}[{{ part }}]{% endfor %}", "[Card][declined]"),
        ("{% set who = agent.name %}{{ who | upper }}", "BOB"),
        ("{{ '-' * 3 }}", "---"),
        ("plain text, no variables\n", "plain text, no variables\n"),
    ],
)
def test_render_table(text: str, rendered: str) -> None:
    """Valid templates render with the ticket's, customer's, agent's and desk's values."""
    templates.validate(text)
    assert templates.render(text, CONTEXT) == rendered


def test_context_without_an_agent_renders_empty_agent_fields() -> None:
    """With no agent (an API reply), agent.* print as nothing rather than failing."""
    context = templates.context(TICKET, DESK, None)

    assert templates.render("[{{ agent.name }}]", context) == "[]"
    assert context["agent"] == {"name": None, "username": None, "external_id": None}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("Hi {{ customer.first_name }", "syntax error on line 1: unexpected '}'"),
        (
            "ok\n{% if %}",
            "syntax error on line 2: Expected an expression, got 'end of statement block'",
        ),
        ("{% for x in y %}{{ x }}{% endfor %}", "unknown variable: y; known: " + KNOWN),
        ("{{ customer.email }}", "unknown variable: customer.email; known: " + KNOWN),
        (
            "{{ user }} {{ agent.phone }} {{ user }}",
            "unknown variables: user, agent.phone; known: " + KNOWN,
        ),
        ("{{ ticket['secret'] }}", "unknown variable: ticket.secret; known: " + KNOWN),
        ("{{ customer.items() }}", "unknown variable: customer.items; known: " + KNOWN),
    ],
)
def test_validate_refusals(text: str, error: str) -> None:
    """Syntax errors name the line; unknown names and attributes are listed with every known one."""
    with pytest.raises(templates.TemplateInvalid) as refused:
        templates.validate(text)

    assert refused.value.message == error


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("{{ ''.__class__ }}", "variable: ''.__class__"),
        (
            "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "variables: ''.__class__.__mro__.1.__subclasses__, ''.__class__.__mro__, ''.__class__",
        ),
        (
            "{{ cycler.__init__.__globals__ }}",
            "variables: cycler.__init__.__globals__, cycler.__init__, cycler",
        ),
        ("{{ lipsum.__globals__['os'] }}", "variables: lipsum.__globals__, lipsum"),
        ("{{ range(10) }}", "variable: range"),
        ("{{ customer.__class__ }}", "variable: customer.__class__"),
        ("{{ customer['__class__'] }}", "variable: customer.__class__"),
        ("{{ ticket.subject.__class__ }}", "variable: ticket.subject.__class__"),
        (
            "{{ ticket.subject.format.__self__ }}",
            "variable: ticket.subject.format.__self__",
        ),
        ("{{ self.__init__ }}", "variables: self.__init__, self"),
        ("{{ config }}", "variable: config"),
    ],
)
def test_sandbox_escapes_are_refused_at_save(text: str, unknown: str) -> None:
    """Reaching for internals or Jinja's globals is refused by validation, naming each culprit
    as written, and rendering refuses it with the same words."""
    with pytest.raises(templates.TemplateInvalid) as refused:
        templates.validate(text)
    with pytest.raises(templates.RenderFailed) as failed:
        templates.render(text, CONTEXT)

    assert refused.value.message == f"unknown {unknown}; known: {', '.join(templates.KNOWN)}"
    assert failed.value.message == refused.value.message


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "{{ ticket.subject | attr('__class__') }}",
            "refused by the sandbox: access to attribute '__class__' of 'str' object is unsafe.",
        ),
        ("{{ 'x' * 5000 }}", "refused by the sandbox: a repetition of 5000 characters is too long"),
        (
            "{{ 10 ** 100 }}",
            "refused by the sandbox: the ** operator is not allowed in canned replies",
        ),
        (
            "{{ '{0.__class__}'.format(ticket.subject) }}",
            "refused by the sandbox: access to attribute '__class__' of 'str' object is unsafe.",
        ),
        ("{{ ticket.number / 0 }}", "ZeroDivisionError: division by zero"),
    ],
)
def test_escapes_past_validation_fail_at_render(text: str, error: str) -> None:
    """What parses as known names but misbehaves fails in the sandbox, never rendering internals."""
    with pytest.raises(templates.RenderFailed) as failed:
        templates.render(text, CONTEXT)

    assert failed.value.message == error


def test_size_limits() -> None:
    """A template and its rendering must each fit one Telegram message (4096 characters)."""
    loop = "{% for c in ticket.subject * 1 %}" + "{{ desk.name }}" * 100 + "{% endfor %}"

    with pytest.raises(templates.TemplateInvalid) as too_long:
        templates.validate("x" * 4097)
    with pytest.raises(templates.RenderFailed) as renders_too_long:
        templates.render(loop, CONTEXT)

    templates.validate("x" * 4096)
    assert too_long.value.message == (
        "the text is 4097 characters long; at most 4096 fit a message"
    )
    assert renders_too_long.value.message == ("the reply is 9100 characters long; at most 4096 fit")
