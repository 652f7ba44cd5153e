"""tgrelay.templates with plain variables, as flows declare them: any method of a plain
value, nothing of Python's internals, no undeclared name."""

from __future__ import annotations

import pytest

from tgrelay import templates

VARIABLES: dict[str, tuple[str, ...] | None] = {"user": ("first_name",), "zip": None}


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("{{ zip }} / {{ zip.upper() }} / {{ zip[0] }}", "ab1 / AB1 / a"),
        ("Hi {{ user.first_name }}", "Hi Ann"),
    ],
)
def test_plain_variables_render_with_their_own_methods(text: str, rendered: str) -> None:
    """A plain variable (None in the spec) may use its own methods and items."""
    assert (
        templates.render(text, {"zip": "ab1", "user": {"first_name": "Ann"}}, VARIABLES) == rendered
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{{ zip.__class__ }}", "unknown variable: zip.__class__; known: user.first_name, zip"),
        ("{{ city }}", "unknown variable: city; known: user.first_name, zip"),
        ("{{ user.id }}", "unknown variable: user.id; known: user.first_name, zip"),
    ],
)
def test_internals_and_undeclared_names_are_refused(text: str, error: str) -> None:
    """Python's internals stay refused on plain variables, as do undeclared names."""
    with pytest.raises(templates.TemplateInvalid) as refused:
        templates.validate(text, VARIABLES)

    assert refused.value.message == error


def test_the_sandbox_names_the_kind_of_template() -> None:
    """The sandbox's refusal of ** says which templates refuse it."""
    with pytest.raises(templates.RenderFailed) as failed:
        templates.render("{{ 2 ** 3 }}", {}, VARIABLES, kind="flow messages")

    assert (
        failed.value.message
        == "refused by the sandbox: the ** operator is not allowed in flow messages"
    )
