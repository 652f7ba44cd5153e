"""conversations.inputs: each input type's accepted forms, values and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from tgrelay.conversations import inputs
from tgrelay.conversations.flow import AskStep
from tgrelay.conversations.models import Answer, Button, Contact, Location, Photo, Text

PHONE_REASON = "Please send a phone number with its country code, e.g. +44 20 7946 0958."
DATE_REASON = "Please send a date, e.g. 2026-01-31 or 31.01.2026."


def ask(expected: dict[str, Any]) -> AskStep:
    """An ask step named `q` expecting `expected`."""
    return AskStep.model_validate(
        {"id": "q", "kind": "ask", "message": "?", "input": expected, "variable": "v"}
    )


CASES: list[tuple[dict[str, Any], Answer, inputs.Verdict]] = [
    # text
    ({"type": "text"}, Text(text="  Main St 1 "), inputs.Accepted(value="Main St 1")),
    ({"type": "text"}, Text(text="   "), inputs.Rejected(reason="Please send text.")),
    (
        {"type": "text", "min_length": 3},
        Text(text="ab"),
        inputs.Rejected(reason="Please send at least 3 characters."),
    ),
    (
        {"type": "text", "max_length": 3},
        Text(text="abcd"),
        inputs.Rejected(reason="Please send at most 3 characters."),
    ),
    ({"type": "text", "pattern": r"\d{5}"}, Text(text="10115"), inputs.Accepted(value="10115")),
    (
        {"type": "text", "pattern": r"\d{5}"},
        Text(text="101150"),  # the whole answer must match
        inputs.Rejected(reason="That is not in the expected format."),
    ),
    (
        {"type": "text"},
        Photo(file_id="f", file_unique_id="u"),
        inputs.Rejected(reason="Please send text."),
    ),
    # number
    ({"type": "number"}, Text(text="42"), inputs.Accepted(value=42)),
    ({"type": "number"}, Text(text="-3.5"), inputs.Accepted(value=-3.5)),
    ({"type": "number"}, Text(text="3,5"), inputs.Accepted(value=3.5)),
    ({"type": "number"}, Text(text="1 000"), inputs.Accepted(value=1000)),
    ({"type": "number"}, Text(text="2.0"), inputs.Accepted(value=2)),
    ({"type": "number"}, Text(text="twelve"), inputs.Rejected(reason="Please send a number.")),
    ({"type": "number"}, Text(text="1e400"), inputs.Rejected(reason="Please send a number.")),
    ({"type": "number"}, Text(text="nan"), inputs.Rejected(reason="Please send a number.")),
    (
        {"type": "number", "integer": True},
        Text(text="2.5"),
        inputs.Rejected(reason="Please send a whole number."),
    ),
    (
        {"type": "number", "min": 1},
        Text(text="0"),
        inputs.Rejected(reason="Please send a number of at least 1."),
    ),
    (
        {"type": "number", "max": 9.5},
        Text(text="10"),
        inputs.Rejected(reason="Please send a number of at most 9.5."),
    ),
    ({"type": "number", "min": 1, "max": 1}, Text(text="1"), inputs.Accepted(value=1)),
    # email
    ({"type": "email"}, Text(text=" Ann@Example.COM "), inputs.Accepted(value="Ann@example.com")),
    (
        {"type": "email"},
        Text(text="ann@localhost"),
        inputs.Rejected(reason="Please send an email address."),
    ),
    (
        {"type": "email"},
        Text(text="ann example.com"),
        inputs.Rejected(reason="Please send an email address."),
    ),
    (
        {"type": "email"},
        Text(text="a@b@c.com"),
        inputs.Rejected(reason="Please send an email address."),
    ),
    # phone (E.164-ish: + or 00, then 8 to 15 digits)
    ({"type": "phone"}, Text(text="+49 30 1234-567"), inputs.Accepted(value="+49301234567")),
    ({"type": "phone"}, Text(text="0044 (20) 7946.0958"), inputs.Accepted(value="+442079460958")),
    ({"type": "phone"}, Text(text="030 1234567"), inputs.Rejected(reason=PHONE_REASON)),
    ({"type": "phone"}, Text(text="+1234567"), inputs.Rejected(reason=PHONE_REASON)),
    ({"type": "phone"}, Text(text="+1234567890123456"), inputs.Rejected(reason=PHONE_REASON)),
    (
        {"type": "phone"},
        Contact(phone_number="447946095800", first_name="Ann"),  # Telegram omits the +
        inputs.Accepted(value="+447946095800"),
    ),
    # date
    ({"type": "date"}, Text(text="2026-01-31"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="2026/1/31"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="31.01.2026"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="02/01/2026"), inputs.Accepted(value="2026-01-02")),  # day first
    ({"type": "date"}, Text(text="31-1-2026"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="31 Jan 2026"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="31 january 2026"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="Jan 31 2026"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="January 31, 2026"), inputs.Accepted(value="2026-01-31")),
    ({"type": "date"}, Text(text="2026-02-30"), inputs.Rejected(reason=DATE_REASON)),
    ({"type": "date"}, Text(text="31 Foo 2026"), inputs.Rejected(reason=DATE_REASON)),
    ({"type": "date"}, Text(text="tomorrow"), inputs.Rejected(reason=DATE_REASON)),
    (
        {"type": "date", "min": "2026-02-01"},
        Text(text="2026-01-31"),
        inputs.Rejected(reason="Please send a date on or after 2026-02-01."),
    ),
    (
        {"type": "date", "max": "2026-01-30"},
        Text(text="2026-01-31"),
        inputs.Rejected(reason="Please send a date on or before 2026-01-30."),
    ),
    # choice
    (
        {"type": "choice", "choices": [{"label": "Germany", "value": "DE"}, {"label": "Other"}]},
        Button(data="q:DE"),
        inputs.Accepted(value="DE"),
    ),
    (
        {"type": "choice", "choices": [{"label": "Germany", "value": "DE"}, {"label": "Other"}]},
        Text(text="other"),
        inputs.Accepted(value="Other"),
    ),
    (
        {"type": "choice", "choices": [{"label": "Germany", "value": "DE"}]},
        Text(text="de"),
        inputs.Accepted(value="DE"),
    ),
    (
        {"type": "choice", "choices": [{"label": "Germany", "value": "DE"}]},
        Button(data="other:DE"),
        inputs.Rejected(reason="Please choose one of the buttons."),
    ),
    # photo, location, contact
    (
        {"type": "photo"},
        Photo(file_id="AgAD", file_unique_id="AQAD"),
        inputs.Accepted(value={"file_id": "AgAD", "file_unique_id": "AQAD"}),
    ),
    ({"type": "photo"}, Text(text="here"), inputs.Rejected(reason="Please send a photo.")),
    (
        {"type": "location"},
        Location(latitude=52.52, longitude=13.405),
        inputs.Accepted(value={"latitude": 52.52, "longitude": 13.405}),
    ),
    ({"type": "location"}, Text(text="Berlin"), inputs.Rejected(reason="Please share a location.")),
    (
        {"type": "contact"},
        Contact(phone_number="4930123456", first_name="Ann", user_id=7),
        inputs.Accepted(
            value={
                "phone_number": "4930123456",
                "first_name": "Ann",
                "last_name": None,
                "user_id": 7,
            }
        ),
    ),
    (
        {"type": "contact"},
        Text(text="+4930123456"),
        inputs.Rejected(reason="Please share a contact."),
    ),
]


@pytest.mark.parametrize(("expected", "answer", "verdict"), CASES)
def test_judge_table(expected: dict[str, Any], answer: Answer, verdict: inputs.Verdict) -> None:
    """Each input type accepts its forms as one JSON value and refuses the rest with a reason
    that never repeats the answer."""
    assert inputs.judge(ask(expected), answer) == verdict
