"""An answer judged against what an ask step expects: the value it sets, or why not.

Values are JSON: text, email, phone (`+` and digits), choice (the choice's value) and date
(ISO `YYYY-MM-DD`) are strings; a number is an int when whole, else a float; a photo,
location or contact is an object. Reasons are shown to the user as the default retry
message, so they never repeat the answer.

Dates: ISO `2026-01-31`, `2026/01/31`, day first `31.01.2026`, `31/01/2026`, `31-01-2026`,
and with a month name `31 Jan 2026`, `31 January 2026`, `Jan 31 2026`, `January 31, 2026`.
Slashes are read day first (not the US month first).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from tgrelay.conversations.flow import (
    AskStep,
    ChoiceInput,
    ContactInput,
    DateInput,
    EmailInput,
    LocationInput,
    NumberInput,
    PhoneInput,
    PhotoInput,
    TextInput,
)
from tgrelay.conversations.models import Answer, Button, Contact, Location, Photo, Text


@dataclass(frozen=True, kw_only=True)
class Accepted:
    value: Any  # the JSON value the step's variable is set to


@dataclass(frozen=True, kw_only=True)
class Rejected:
    reason: str  # a sentence for the user


Verdict = Accepted | Rejected

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_NOISE = re.compile(r"[\s().\-]")
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}
_YMD = re.compile(r"^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$")
_DMY = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$")
_D_MONTH_Y = re.compile(r"^(\d{1,2})\s+([a-z]+)\.?,?\s+(\d{4})$")
_MONTH_D_Y = re.compile(r"^([a-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})$")


def judge(step: AskStep, answer: Answer) -> Verdict:
    """Whether `answer` is what `step` asks for, and the value it sets."""
    expected = step.input
    if isinstance(expected, ChoiceInput):
        return choice(expected, step.id, answer)
    if isinstance(expected, PhoneInput) and isinstance(answer, Contact):
        return phone(answer.phone_number, shared=True)
    if isinstance(expected, PhotoInput):
        if isinstance(answer, Photo):
            return Accepted(
                value={"file_id": answer.file_id, "file_unique_id": answer.file_unique_id}
            )
        return Rejected(reason="Please send a photo.")
    if isinstance(expected, LocationInput):
        if isinstance(answer, Location):
            return Accepted(value={"latitude": answer.latitude, "longitude": answer.longitude})
        return Rejected(reason="Please share a location.")
    if isinstance(expected, ContactInput):
        if isinstance(answer, Contact):
            return Accepted(
                value={
                    "phone_number": answer.phone_number,
                    "first_name": answer.first_name,
                    "last_name": answer.last_name,
                    "user_id": answer.user_id,
                }
            )
        return Rejected(reason="Please share a contact.")
    if not isinstance(answer, Text):
        return Rejected(reason=_text_wanted(expected))
    if isinstance(expected, TextInput):
        return text(expected, answer.text)
    if isinstance(expected, NumberInput):
        return number(expected, answer.text)
    if isinstance(expected, EmailInput):
        return email(answer.text)
    if isinstance(expected, PhoneInput):
        return phone(answer.text)
    return date(expected, answer.text)


def _text_wanted(expected: TextInput | NumberInput | EmailInput | PhoneInput | DateInput) -> str:
    return {
        "text": "Please send text.",
        "number": "Please send a number.",
        "email": "Please send an email address.",
        "phone": "Please send a phone number with its country code, e.g. +44 20 7946 0958.",
        "date": "Please send a date, e.g. 2026-01-31 or 31.01.2026.",
    }[expected.type]


def text(expected: TextInput, raw: str) -> Verdict:
    """Text, stripped, checked against the length limits and the pattern."""
    value = raw.strip()
    if not value:
        return Rejected(reason="Please send text.")
    if expected.min_length is not None and len(value) < expected.min_length:
        return Rejected(reason=f"Please send at least {expected.min_length} characters.")
    if expected.max_length is not None and len(value) > expected.max_length:
        return Rejected(reason=f"Please send at most {expected.max_length} characters.")
    if expected.pattern is not None and re.fullmatch(expected.pattern, value) is None:
        return Rejected(reason="That is not in the expected format.")
    return Accepted(value=value)


def number(expected: NumberInput, raw: str) -> Verdict:
    """A decimal number (`12`, `-3.5`, `3,5`, `1 000`), whole when `integer` asks."""
    cleaned = raw.strip().replace(" ", "").replace("\u00a0", "")
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", cleaned) is None:
        return Rejected(reason="Please send a number.")
    parsed = float(cleaned)
    if not math.isfinite(parsed):
        return Rejected(reason="Please send a number.")
    whole = parsed.is_integer() and abs(parsed) < 2**53
    if expected.integer and not whole:
        return Rejected(reason="Please send a whole number.")
    if expected.min is not None and parsed < expected.min:
        return Rejected(reason=f"Please send a number of at least {_shown(expected.min)}.")
    if expected.max is not None and parsed > expected.max:
        return Rejected(reason=f"Please send a number of at most {_shown(expected.max)}.")
    return Accepted(value=int(parsed) if whole else parsed)


def _shown(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def email(raw: str) -> Verdict:
    """An address `local@domain.tld`, its domain lowercased."""
    value = raw.strip()
    if len(value) > 254 or _EMAIL.fullmatch(value) is None:
        return Rejected(reason="Please send an email address.")
    local, _, domain = value.rpartition("@")
    return Accepted(value=f"{local}@{domain.lower()}")


def phone(raw: str, *, shared: bool = False) -> Verdict:
    """An international number (`+` or `00`, then 8 to 15 digits: E.164's length), as `+`
    and digits. A shared contact's number (`shared`) often comes without its `+`: Telegram
    sends it in international form, so one is added."""
    value = _PHONE_NOISE.sub("", raw.strip())
    if value.startswith("00"):
        value = "+" + value[2:]
    elif shared and not value.startswith("+"):
        value = "+" + value
    if re.fullmatch(r"\+[1-9]\d{7,14}", value) is None:
        return Rejected(
            reason="Please send a phone number with its country code, e.g. +44 20 7946 0958."
        )
    return Accepted(value=value)


def date(expected: DateInput, raw: str) -> Verdict:
    """A date in one of the forms the module docstring lists, as ISO, within min and max."""
    parsed = parse_date(raw)
    if parsed is None:
        return Rejected(reason="Please send a date, e.g. 2026-01-31 or 31.01.2026.")
    if expected.min is not None and parsed < expected.min:
        return Rejected(reason=f"Please send a date on or after {expected.min.isoformat()}.")
    if expected.max is not None and parsed > expected.max:
        return Rejected(reason=f"Please send a date on or before {expected.max.isoformat()}.")
    return Accepted(value=parsed.isoformat())


def parse_date(raw: str) -> dt.date | None:
    """The date `raw` writes, none when it is not one of the accepted forms."""
    value = raw.strip().lower()
    year: int | str
    if match := _YMD.fullmatch(value):
        year, month, day = match.groups()
    elif match := _DMY.fullmatch(value):
        day, month, year = match.groups()
    elif match := _D_MONTH_Y.fullmatch(value):
        day, name, year = match.groups()
        month = str(_MONTHS.get(name, 0))
    elif match := _MONTH_D_Y.fullmatch(value):
        name, day, year = match.groups()
        month = str(_MONTHS.get(name, 0))
    else:
        return None
    try:
        return dt.date(int(year), int(month), int(day))
    except ValueError:
        return None


def choice(expected: ChoiceInput, step_id: str, answer: Answer) -> Verdict:
    """A pressed button of this step, or text equal to a choice's label or value (any case)."""
    for option in expected.choices:
        if isinstance(answer, Button) and answer.data == button_data(step_id, option.key):
            return Accepted(value=option.key)
        if isinstance(answer, Text) and answer.text.strip().casefold() in (
            option.label.casefold(),
            option.key.casefold(),
        ):
            return Accepted(value=option.key)
    return Rejected(reason="Please choose one of the buttons.")


# What the runtime puts before a button's `step:value` in the callback data Telegram carries,
# so the conversations handler knows its own buttons from other handlers' (and the app's).
CALLBACK_TAG = "cv:"
# Telegram's limit on callback data is 64 bytes: this much is left for `step:value`.
MAX_BUTTON_DATA_BYTES = 64 - len(CALLBACK_TAG)


def button_data(step_id: str, value: str) -> str:
    """A conversation's button as the engine names it: the step, then the value (at most
    MAX_BUTTON_DATA_BYTES, which the flow's checks ensure)."""
    return f"{step_id}:{value}"
