"""The flow document: a conversation described as data (issue 21).

A flow has a `name`, a `trigger`, an idle `timeout_seconds` and `steps`, each with an `id`
and one `kind`: ask, call, say, branch, confirm, handoff, end. The pydantic models below are
the schema (published as docs/flow.schema.json); `parse` adds the checks a schema cannot
say (see `checks.py`) and reports every problem at the step and field it concerns, e.g.
`steps[2] (id "zip").input.pattern: not a valid regex: …`.

Where a say, ask or call step omits `next`, the conversation goes on with the step after
it in the list.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# A step id or variable name: short, so a button's callback data `step:value` fits
# Telegram's 64 bytes.
StepId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
VariableName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,31}$")]
# A message template (tgrelay.templates' dialect): the flow's variables, `user.*`, `chat.id`.
Template = Annotated[str, Field(min_length=1, max_length=4096)]
Json = Any  # a JSON value: what a variable holds


class _Document(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- triggers ---------------------------------------------------------------------------


class CommandTrigger(_Document):
    """Started by a command in a private chat, e.g. `/billing`."""

    type: Literal["command"]
    command: Annotated[str, Field(pattern=r"^/[a-z0-9_]{1,32}$")]


class DeepLinkTrigger(_Document):
    """Started by a deep link `t.me/<bot>?start=<start>` (the start parameter)."""

    type: Literal["deep_link"]
    start: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class CallbackTrigger(_Document):
    """Started by pressing an inline button whose callback data is `data`."""

    type: Literal["callback"]
    data: Annotated[str, Field(min_length=1, max_length=64)]


class ApiTrigger(_Document):
    """Started only by the API, for a given chat."""

    type: Literal["api"]
    # The variables POST /v1/conversations gives at the start (e.g. an order id the app
    # knows): declared, so that templates and conditions may name them.
    variables: Annotated[tuple[VariableName, ...], Field(max_length=100)] = ()


Trigger = Annotated[
    CommandTrigger | DeepLinkTrigger | CallbackTrigger | ApiTrigger, Field(discriminator="type")
]


# --- what an ask step expects ----------------------------------------------------------


class TextInput(_Document):
    type: Literal["text"]
    pattern: str | None = None  # a Python regex the whole answer must match
    min_length: Annotated[int, Field(ge=0)] | None = None
    max_length: Annotated[int, Field(ge=1, le=4096)] | None = None


class NumberInput(_Document):
    type: Literal["number"]
    integer: bool = False  # true: a whole number only
    min: float | None = None
    max: float | None = None


class EmailInput(_Document):
    type: Literal["email"]


class PhoneInput(_Document):
    type: Literal["phone"]  # E.164-ish; a shared contact is accepted too


class DateInput(_Document):
    type: Literal["date"]
    min: dt.date | None = None
    max: dt.date | None = None


class Choice(_Document):
    label: Annotated[str, Field(min_length=1, max_length=64)]  # the button's text
    # what the variable is set to (the label when omitted); with the step id it is the
    # button's callback data, so it stays short
    value: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,31}$")] | None = None

    @property
    def key(self) -> str:
        return self.value if self.value is not None else self.label


class ChoiceInput(_Document):
    type: Literal["choice"]
    choices: list[Choice]  # inline buttons, one per row, in this order


class PhotoInput(_Document):
    type: Literal["photo"]


class LocationInput(_Document):
    type: Literal["location"]


class ContactInput(_Document):
    type: Literal["contact"]


Input = Annotated[
    TextInput
    | NumberInput
    | EmailInput
    | PhoneInput
    | DateInput
    | ChoiceInput
    | PhotoInput
    | LocationInput
    | ContactInput,
    Field(discriminator="type"),
]


# --- steps -------------------------------------------------------------------------------


class _Step(_Document):
    id: StepId


class AskStep(_Step):
    """Ask the user and wait: the answer, once valid, sets `variable`."""

    kind: Literal["ask"]
    message: Template
    input: Input
    variable: VariableName
    retry_message: Template | None = None  # sent after an invalid answer; default: the reason
    max_tries: Annotated[int, Field(ge=1, le=100)] = 3
    on_exhausted: StepId | None = None  # after max_tries invalid answers; none: it fails
    sensitive: bool = False  # the answer is masked in the history (not in completed's data)
    next: StepId | None = None


class CallStep(_Step):
    """POST variables to the team's app and wait for its JSON answer, which may set
    variables (`{"variables": {…}}`) and pick the next step (`{"next": "step_id"}`)."""

    kind: Literal["call"]
    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)]
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 10
    send: list[VariableName] | None = None  # the variables posted; none: all of them
    sets: list[VariableName] = []  # the variables the answer may set, for later templates
    fallback_text: Template | None = None  # sent at once when the first attempt fails
    deadline_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 600  # durable retries
    next: StepId | None = None
    on_failure: StepId | None = None  # after the deadline; none: the conversation fails


class SayStep(_Step):
    """Send a message and go on at once."""

    kind: Literal["say"]
    message: Template
    next: StepId | None = None


Operator = Literal[
    "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "matches", "exists", "missing"
]


class Condition(_Document):
    variable: Annotated[str, Field(min_length=1)]  # a flow variable, or user.* / chat.id
    op: Operator
    value: Json = None  # unused by exists / missing; a list for in / not_in; a regex for matches
    next: StepId


class BranchStep(_Step):
    """Go to the first condition's `next` that holds, else to `default`."""

    kind: Literal["branch"]
    conditions: list[Condition]
    default: StepId


class ConfirmStep(_Step):
    """Ask a yes/no question with two buttons and wait."""

    kind: Literal["confirm"]
    message: Template
    yes: StepId
    no: StepId
    yes_label: Annotated[str, Field(min_length=1, max_length=64)] = "Yes"
    no_label: Annotated[str, Field(min_length=1, max_length=64)] = "No"


class HandoffStep(_Step):
    """End the conversation by opening a support ticket that shows the variables."""

    kind: Literal["handoff"]
    message: Template | None = None


class EndStep(_Step):
    """End the conversation, completed."""

    kind: Literal["end"]
    message: Template | None = None


Step = Annotated[
    AskStep | CallStep | SayStep | BranchStep | ConfirmStep | HandoffStep | EndStep,
    Field(discriminator="kind"),
]


class Flow(_Document):
    """A conversation described as data (POST /v1/flows)."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
    description: Annotated[str, Field(max_length=1000)] | None = None
    trigger: Trigger
    timeout_seconds: Annotated[int, Field(ge=30, le=7 * 86400)] = 900  # idle, then abandoned
    steps: Annotated[list[Step], Field(min_length=1, max_length=200)]

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError when the flow has none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def following(self, step_id: str) -> str | None:
        """The id of the step after `step_id` in the list, none after the last."""
        ids = [step.id for step in self.steps]
        index = ids.index(step_id) + 1
        return ids[index] if index < len(ids) else None


def next_of(flow: Flow, step: AskStep | CallStep | SayStep) -> str | None:
    """Where a say, ask or call step goes on: its `next`, else the following step."""
    return step.next if step.next is not None else flow.following(step.id)
