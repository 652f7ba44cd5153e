"""User-written templates: a sandboxed Jinja2 dialect over a declared set of variables.

Canned replies (support) and flow messages (conversations) each declare their variables
and use these two functions. `validate` refuses what could not render before it is saved:
syntax errors, and names or attributes outside the declared variables (found by walking
the parsed template, so an unused branch is checked too). `render` validates again and
runs in a SandboxedEnvironment without Jinja's globals (range, cycler, lipsum, …),
refusing `**` and oversized `*`, so a template can neither reach Python's internals nor
build a huge string.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from tgrelay import errors

# Each variable a template may name, with the attributes it may take: a tuple lists them
# all (`customer.first_name`); None declares a plain value whose own methods and items are
# not declared one by one (a flow's `zip`), though names starting with `_` stay refused.
Variables = Mapping[str, tuple[str, ...] | None]
# A template and what it renders must each fit one Telegram message.
MAX_TEXT_LENGTH = 4096


class TemplateInvalid(errors.InvalidInput):
    """The template cannot be saved: a syntax error or unknown variables."""


class RenderFailed(errors.TgrelayError):
    """The template did not render; the message says what failed."""


def known(variables: Variables) -> tuple[str, ...]:
    """Every name a template may use, as written in one (`customer.first_name`, `zip`)."""
    return tuple(
        name if attributes is None else f"{name}.{attribute}"
        for name, attributes in variables.items()
        for attribute in (attributes or ("",))
        if attributes is None or attribute
    )


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, with the arithmetic that can exhaust memory held back."""

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self, kind: str) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            finalize=_finalize,
            keep_trailing_newline=True,
        )
        self.globals.clear()
        self.kind = kind

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            raise SecurityError(f"the ** operator is not allowed in {self.kind}")
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


@functools.cache
def _environment(kind: str) -> _Sandbox:
    return _Sandbox(kind)


def validate(text: str, variables: Variables) -> None:
    """Raise TemplateInvalid unless `text` parses and uses only `variables`."""
    if len(text) > MAX_TEXT_LENGTH:
        raise TemplateInvalid(
            f"the text is {len(text)} characters long; at most {MAX_TEXT_LENGTH} fit a message"
        )
    try:
        tree = _environment("templates").parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(f"syntax error on line {exc.lineno}: {exc.message}") from None
    unknown = _unknown_names(tree, variables)
    if unknown:
        raise TemplateInvalid(
            f"unknown {'variable' if len(unknown) == 1 else 'variables'}: "
            f"{', '.join(unknown)}; known: {', '.join(known(variables))}"
        )


def _unknown_names(tree: nodes.Template, variables: Variables) -> list[str]:
    """Names and attributes outside `variables`, in the order they appear (names a template
    sets itself, as loop variables or with `set`, are its own)."""
    own = {node.name for node in tree.find_all(nodes.Name) if node.ctx in ("store", "param")}
    unknown: list[str] = []
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        name = _unknown(node, own, variables)
        if name is not None and name not in unknown:
            unknown.append(name)
    return unknown


def _unknown(node: nodes.Node, own: set[str], variables: Variables) -> str | None:
    if isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name not in variables and node.name not in own:
            return node.name
        return None
    attribute = _attribute_of(node)
    if attribute is None:
        return None
    target = node.node  # type: ignore[attr-defined]
    if attribute.startswith("_"):
        return f"{_label(target)}.{attribute}"  # Python internals, never a variable
    variable = target.name if isinstance(target, nodes.Name) else None
    if variable is None or variable in own or variable not in variables:
        return None
    attributes = variables[variable]
    if attributes is not None and attribute not in attributes:
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


def render(
    text: str, context: Mapping[str, Any], variables: Variables, *, kind: str = "templates"
) -> str:
    """`text` rendered with `context`, whose keys are `variables`; RenderFailed saying why not.
    `kind` names the templates in the sandbox's refusals ("canned replies")."""
    try:
        validate(text, variables)
    except TemplateInvalid as exc:
        raise RenderFailed(exc.message) from None
    try:
        rendered = _environment(kind).from_string(text).render(context)
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
