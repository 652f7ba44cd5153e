"""conversations.checks: a flow document's problems, each pointing at its step and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tgrelay.conversations import checks
from tgrelay.conversations.flow import AskStep, CommandTrigger, EndStep, Flow

EXAMPLE = Path(__file__).parents[2] / "examples" / "flows" / "billing_address.json"


def document(*steps: dict[str, Any]) -> dict[str, Any]:
    """A flow document with these steps (a valid one when none are given)."""
    return {
        "name": "zip-code",
        "trigger": {"type": "command", "command": "/zip"},
        "steps": list(steps)
        or [
            {
                "id": "zip",
                "kind": "ask",
                "message": "Zip?",
                "input": {"type": "text"},
                "variable": "zip",
            },
            {"id": "done", "kind": "end", "message": "Thanks, {{ zip }}"},
        ],
    }


ASK = {"id": "zip", "kind": "ask", "message": "Zip?", "input": {"type": "text"}, "variable": "zip"}
END = {"id": "done", "kind": "end"}


def problems(doc: str | dict[str, Any]) -> tuple[str, ...]:
    """The problems checks.parse reports for `doc`."""
    with pytest.raises(checks.FlowInvalid) as refused:
        checks.parse(doc)
    return refused.value.problems


def test_a_valid_document_parses_with_its_defaults() -> None:
    """A minimal flow parses; omitted fields take their documented defaults."""
    flow = checks.parse(json.dumps(document()))

    assert flow == Flow(
        name="zip-code",
        trigger=CommandTrigger(type="command", command="/zip"),
        timeout_seconds=900,
        steps=[
            AskStep.model_validate(ASK),
            EndStep(id="done", kind="end", message="Thanks, {{ zip }}"),
        ],
    )
    ask = flow.steps[0]
    assert isinstance(ask, AskStep)
    assert (ask.max_tries, ask.sensitive, ask.next, ask.on_exhausted) == (3, False, None, None)


def test_the_example_flow_is_valid() -> None:
    """examples/flows/billing_address.json parses and passes every check."""
    flow = checks.parse(EXAMPLE.read_text())

    assert [step.kind for step in flow.steps] == [
        "ask",
        "ask",
        "ask",
        "ask",
        "call",
        "branch",
        "say",
        "confirm",
        "call",
        "end",
        "handoff",
    ]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            [{**ASK, "input": {"type": "text", "pattern": "[0-9"}}, END],
            'steps[0] (id "zip").input.pattern: not a valid regex: '
            "unterminated character set at position 0",
        ),
        (
            [ASK, {**END, "id": "zip"}],
            'steps[1] (id "zip").id: duplicate of steps[0]',
        ),
        (
            [{**ASK, "next": "nowhere"}, END],
            'steps[0] (id "zip").next: no step has the id "nowhere"',
        ),
        (
            [END, ASK],
            'steps[1] (id "zip").next: the last step must name its next step (or be an end or '
            "handoff)",
        ),
        (
            [{**ASK, "message": "Zip, {{ user.email }}?"}, END],
            'steps[0] (id "zip").message: unknown variable: user.email; known: user.id, '
            "user.first_name, user.last_name, user.username, user.language_code, chat.id, zip",
        ),
        (
            [{**ASK, "retry_message": "{% if %}"}, END],
            'steps[0] (id "zip").retry_message: syntax error on line 1: Expected an expression, '
            "got 'end of statement block'",
        ),
        (
            [{**ASK, "input": {"type": "number", "min": 5, "max": 3}}, END],
            'steps[0] (id "zip").input.min: 5 is greater than max 3',
        ),
        (
            [{**ASK, "input": {"type": "date", "min": "2026-02-01", "max": "2026-01-01"}}, END],
            'steps[0] (id "zip").input.min: 2026-02-01 is greater than max 2026-01-01',
        ),
        (
            [{**ASK, "input": {"type": "text", "min_length": 9, "max_length": 3}}, END],
            'steps[0] (id "zip").input.min_length: 9 is greater than max_length 3',
        ),
        (
            [{**ASK, "input": {"type": "choice", "choices": []}}, END],
            'steps[0] (id "zip").input.choices: at least one choice is needed',
        ),
        (
            [
                {
                    **ASK,
                    "input": {
                        "type": "choice",
                        "choices": [{"label": "A"}, {"label": "B", "value": "A"}],
                    },
                },
                END,
            ],
            'steps[0] (id "zip").input.choices[1]: the value "A" is already a choice',
        ),
        (
            [{**ASK, "variable": "user"}, END],
            'steps[0] (id "zip").variable: "user" is reserved for Telegram\'s facts',
        ),
        (
            [{"id": "app", "kind": "call", "url": "https://app.example/x", "send": ["zip"]}, END],
            'steps[0] (id "app").send[0]: no step sets the variable "zip"',
        ),
        (
            [
                ASK,
                {
                    "id": "route",
                    "kind": "branch",
                    "conditions": [
                        {"variable": "city", "op": "eq", "value": "x", "next": "done"},
                        {"variable": "zip", "op": "matches", "value": "(", "next": "done"},
                        {"variable": "zip", "op": "in", "value": "10115", "next": "done"},
                    ],
                    "default": "done",
                },
                END,
            ],
            'steps[1] (id "route").conditions[0].variable: unknown variable "city"',
        ),
        (
            [
                ASK,
                {"id": "a", "kind": "say", "message": "a"},
                {
                    "id": "b",
                    "kind": "branch",
                    "conditions": [{"variable": "zip", "op": "exists", "next": "done"}],
                    "default": "a",
                },
                END,
            ],
            'steps[1] (id "a"): a loop of steps that never wait: a → b → a',
        ),
        (
            [{**ASK, "next": "zip"}, END],
            "steps: no end or handoff step can be reached from the first step",
        ),
    ],
)
def test_each_check_names_the_step_and_field(steps: list[dict[str, Any]], expected: str) -> None:
    """A document failing one check is refused with that problem first, at its step and field."""
    assert problems(document(*steps))[0] == expected


def test_every_problem_is_reported_at_once() -> None:
    """All problems of a document come back together, in step order, loops and reach last."""
    steps: list[dict[str, Any]] = [
        ASK,
        {
            "id": "route",
            "kind": "branch",
            "conditions": [
                {"variable": "zip", "op": "matches", "value": "(", "next": "done"},
                {"variable": "zip", "op": "in", "value": "10115", "next": "done"},
                {"variable": "zip", "op": "gt", "value": [1], "next": "ghost"},
            ],
            "default": "route",
        },
        END,
    ]

    assert problems(document(*steps)) == (
        'steps[1] (id "route").conditions[2].next: no step has the id "ghost"',
        'steps[1] (id "route").conditions[0].value: not a valid regex: missing ), unterminated '
        "subpattern at position 0",
        'steps[1] (id "route").conditions[1].value: in compares with a list of values',
        'steps[1] (id "route").conditions[2].value: gt compares with a number or a string',
        'steps[1] (id "route"): a loop of steps that never wait: route → route',
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["steps"][0]["input"].update(type="colour"),
            "steps[0] (id \"zip\").input.type: Input tag 'colour' found using 'type' does not match "
            "any of the expected tags: 'text', 'number', 'email', 'phone', 'date', 'choice', "
            "'photo', 'location', 'contact'",
        ),
        (
            lambda d: d["steps"][0].update(kind="shout"),
            "steps[0] (id \"zip\").kind: Input tag 'shout' found using 'kind' does not match any "
            "of the expected tags: 'ask', 'call', 'say', 'branch', 'confirm', 'handoff', 'end'",
        ),
        (
            lambda d: d["steps"][0]["input"].update(pattern=7),
            'steps[0] (id "zip").input.pattern: Input should be a valid string',
        ),
        (
            lambda d: d["steps"][0].update(colour="red"),
            'steps[0] (id "zip").colour: Extra inputs are not permitted',
        ),
        (
            lambda d: d["steps"][1].update(id="has space"),
            "steps[1] (id \"has space\").id: String should match pattern '^[A-Za-z0-9_-]{1,32}$'",
        ),
        (
            lambda d: d["trigger"].update(command="billing"),
            "trigger.command: String should match pattern '^/[a-z0-9_]{1,32}$'",
        ),
        (
            lambda d: d.pop("steps"),
            "steps: Field required",
        ),
    ],
)
def test_schema_errors_point_at_the_step_and_field(change: Any, expected: str) -> None:
    """What the schema refuses is reported at the document's own path, without pydantic's tags."""
    doc = copy.deepcopy(document())
    change(doc)

    assert problems(doc) == (expected,)


def test_text_that_is_not_a_json_object_is_refused() -> None:
    """A body that is not JSON, or not an object, is one problem saying so."""
    assert (problems("{"), problems("[1]")) == (
        ("not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",),
        ("the document must be a JSON object",),
    )
