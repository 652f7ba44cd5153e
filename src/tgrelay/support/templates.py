"""Canned replies' templates: a sandboxed Jinja2 dialect with a fixed set of variables.

`validate` refuses what could not render before it is saved: syntax errors, and names or
attributes outside `VARIABLES` (found by walking the parsed template, so an unused branch
is checked too). `render` validates again and runs in a SandboxedEnvironment without
Jinja's globals (range, cycler, lipsum, …), refusing `**` and oversized `*`, so a template
can neither reach Python's internals nor build a huge string.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from tgrelay import errors
from tgrelay.support.models import Agent, Desk, Ticket

# Every variable and its attributes; a name a template uses must be one of these.
VARIABLES: dict[str, tuple[str, ...]] = {
    "customer": ("id", "first_name", "last_name", "username", "language_code", "name"),
    "agent": ("name", "username", "external_id"),
    "ticket": ("id", "number", "status", "subject"),
    "desk": ("name",),
}
KNOWN = tuple(f"{name}.{attribute}" for name, attrs in VARIABLES.items() for attribute in attrs)
# A template and what it renders must each fit one Telegram message.
MAX_TEXT_LENGTH = 4096


class TemplateInvalid(errors.InvalidInput):
    """The template cannot be saved: a syntax error or unknown variables."""


class RenderFailed(errors.TgrelayError):
    """The template did not render; the message says what failed."""


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, with the arithmetic that can exhaust memory held back."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            raise SecurityError("the ** operator is not allowed in canned replies")
        size = max(_length(left) * _count(right), _length(right) * _count(left))
        if size > MAX_TEXT_LENGTH:
            raise SecurityError(f"a repetition of {size} characters is too long")
        return operator.mul(left, right)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _finalize(value: Any) -> Any:
    # A field Telegram did not give (no last name, no agent) prints as nothing, not "None".
    return "" if value is None else value


_environment = _Sandbox(
    undefined=StrictUndefined, autoescape=False, finalize=_finalize, keep_trailing_newline=True
)
_environment.globals.clear()


def validate(text: str) -> None:
    """Raise TemplateInvalid unless `text` parses and uses only known variables."""
    if len(text) > MAX_TEXT_LENGTH:
        raise TemplateInvalid(
            f"the text is {len(text)} characters long; at most {MAX_TEXT_LENGTH} fit a message"
        )
    try:
        tree = _environment.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(f"syntax error on line {exc.lineno}: {exc.message}") from None
    unknown = _unknown_names(tree)
    if unknown:
        raise TemplateInvalid(
            f"unknown {'variable' if len(unknown) == 1 else 'variables'}: "
            f"{', '.join(unknown)}; known: {', '.join(KNOWN)}"
        )


def _unknown_names(tree: nodes.Template) -> list[str]:
    """Names and attributes outside VARIABLES, in the order they appear (names a template
    sets itself, as loop variables or with `set`, are its own)."""
    own = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    unknown: list[str] = []
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        name = _unknown(node, own)
        if name is not None and name not in unknown:
            unknown.append(name)
    return unknown


def _unknown(node: nodes.Node, own: set[str]) -> str | None:
    if isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name not in VARIABLES and node.name not in own:
            return node.name
        return None
    attribute = _attribute_of(node)
    if attribute is None:
        return None
    target = node.node  # type: ignore[attr-defined]
    if attribute.startswith("_"):
        return f"{_label(target)}.{attribute}"  # Python internals, never a variable
    variable = target.name if isinstance(target, nodes.Name) else None
    if variable in VARIABLES and variable not in own and attribute not in VARIABLES[variable]:
        return f"{variable}.{attribute}"
    return None


def _attribute_of(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return str(node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return str(node.arg.value)
    return None


def _label(node: nodes.Node) -> str:
    """How the template wrote the expression an attribute is taken of (`ticket.subject`)."""
    if isinstance(node, nodes.Name):
        return str(node.name)
    if isinstance(node, nodes.Const):
        return repr(node.value)
    attribute = _attribute_of(node)
    if attribute is not None:
        return f"{_label(node.node)}.{attribute}"  # type: ignore[attr-defined]
    return type(node).__name__.lower()


def render(text: str, context: Mapping[str, Any]) -> str:
    """The template rendered with `context` (see `context`); RenderFailed saying why not."""
    try:
        validate(text)
    except TemplateInvalid as exc:
        raise RenderFailed(exc.message) from None
    try:
        rendered = _environment.from_string(text).render(context)
    except SecurityError as exc:
        raise RenderFailed(f"refused by the sandbox: {exc}") from None
    except TemplateError as exc:
        raise RenderFailed(str(exc.message or exc)) from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise RenderFailed(f"{type(exc).__name__}: {exc}") from None
    if len(rendered) > MAX_TEXT_LENGTH:
        raise RenderFailed(
            f"the reply is {len(rendered)} characters long; at most {MAX_TEXT_LENGTH} fit"
        )
    return rendered


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
