"""The pure engine: `advance(flow, state, input, now) → (state, effects)`.

    start ──▶ say/branch … ──▶ ask/confirm (active) ──answer──▶ say/branch … ──▶ …
                          └──▶ call (calling) ──answered──▶ …   ──failed past deadline──▶ on_failure
                          └──▶ end/handoff (completed)
    active|calling ──cancel / idle timeout / tries or deadline out with nowhere to go──▶ abandoned

`advance` runs through say and branch steps until a step waits (ask, confirm, call) or
ends (end, handoff). It never raises for what a user sends: an invalid answer gets the
retry message, and the step's `on_exhausted` (or failure) once `max_tries` are spent. It
reads no clock and no store: the same arguments give the same result, and the runtime
carries out the effects in the transaction that stores the new state. An input that does
not fit the state (a stale button, a late timer, anything after the end) changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tgrelay import templates
from tgrelay.conversations import checks, inputs
from tgrelay.conversations.flow import (
    AskStep,
    BranchStep,
    CallStep,
    ChoiceInput,
    Condition,
    ConfirmStep,
    Flow,
    HandoffStep,
    SayStep,
    Step,
    next_of,
)
from tgrelay.conversations.models import (
    TERMINAL,
    AbandonReason,
    Answer,
    Button,
    CallFailed,
    CallSucceeded,
    Cancel,
    Contact,
    ConversationAbandonedData,
    ConversationCompletedData,
    ConversationStartedData,
    ConversationStepFailedData,
    EventData,
    IdleTimeout,
    Input,
    Location,
    Photo,
    Start,
    State,
    Status,
    Text,
)

MASK = "***"  # what the history shows instead of a sensitive step's answer
_SUMMARY_LENGTH = 200  # an answer's text in the history is cut to this


# --- effects ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Choice:
    """An inline button: one per row."""

    text: str
    data: str  # callback data, `step:value`


@dataclass(frozen=True, kw_only=True)
class SendMessage:
    """Send this text to the conversation's chat."""

    text: str
    buttons: tuple[Choice, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RequestCall:
    """POST `payload` to the call step's URL; retry durably until `deadline`."""

    step: str
    url: str
    payload: dict[str, Any]  # {"flow", "version", "step", "user", "chat", "variables"}
    timeout_seconds: float  # per attempt
    deadline: datetime  # after it, report CallFailed(deadline_passed=True)


@dataclass(frozen=True, kw_only=True)
class OpenTicket:
    """A handoff: open a support ticket for the chat, showing the variables."""

    variables: dict[str, Any]
    summary: str  # the variables as lines `name: value`, sensitive ones masked


@dataclass(frozen=True, kw_only=True)
class Transition:
    """A row of the conversation's history."""

    from_step: str | None  # none: the start
    to_step: str | None  # none: abandoned; the same step: an answer was refused
    summary: str  # what moved it, a sensitive step's answer masked
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Emit:
    """Emit this event (the type is events.catalog's, declared by the runtime)."""

    type: str  # conversation.started | .completed | .abandoned | .step_failed
    data: EventData


Effect = SendMessage | RequestCall | OpenTicket | Transition | Emit


# --- the transition --------------------------------------------------------------------


def advance(
    flow: Flow, state: State | None, event: Input, now: datetime
) -> tuple[State | None, tuple[Effect, ...]]:
    """The conversation's next state and what to do for it; `state` is none before Start."""
    if state is None:
        if not isinstance(event, Start):
            return None, ()
        run = _Run.starting(flow, event, now)
        run.emit("conversation.started", ConversationStartedData(**run.who()))
        run.go(None, flow.steps[0].id, "start")
        return run.finish()
    if state.status in TERMINAL or isinstance(event, Start):
        return state, ()
    run = _Run(flow=flow, state=state, now=now)
    if isinstance(event, Cancel):
        run.abandon(AbandonReason.CANCEL, "cancel")
    elif isinstance(event, IdleTimeout):
        idle = now - state.last_input_at >= timedelta(seconds=flow.timeout_seconds)
        if state.status is not Status.ACTIVE or not idle:
            return state, ()
        run.abandon(AbandonReason.TIMEOUT, "idle timeout")
    elif isinstance(event, (CallSucceeded, CallFailed)):
        if state.status is not Status.CALLING or event.step != state.step:
            return state, ()
        step = flow.step(state.step)
        assert isinstance(step, CallStep)  # calling happens only at a call step
        if isinstance(event, CallSucceeded):
            run.answered(step, event.answer)
        else:
            run.call_failed(step, event)
    else:
        if state.status is not Status.ACTIVE:
            return state, ()  # the user wrote while the app is called: it waits for the app
        step = flow.step(state.step)
        if isinstance(event, Button) and not event.data.startswith(f"{step.id}:"):
            return state, ()  # a button of an earlier message
        if isinstance(step, AskStep):
            run.ask_answered(step, event)
        elif isinstance(step, ConfirmStep):
            run.confirm_answered(step, event)
    return run.finish()


@dataclass(kw_only=True)
class _Run:
    """One advance under way: the state's fields as they change, and the effects so far."""

    flow: Flow
    state: State
    now: datetime
    effects: list[Effect] = field(default_factory=list)

    @classmethod
    def starting(cls, flow: Flow, start: Start, now: datetime) -> _Run:
        state = State(
            flow=flow.name,
            version=start.version,
            step=flow.steps[0].id,
            variables=dict(start.variables or {}),
            tries=0,
            status=Status.ACTIVE,
            facts=start.facts,
            started_at=now,
            last_input_at=now,
        )
        return cls(flow=flow, state=state, now=now)

    def finish(self) -> tuple[State, tuple[Effect, ...]]:
        return self.state, tuple(self.effects)

    def update(self, **changes: Any) -> None:
        self.state = self.state.model_copy(update=changes)

    def who(self) -> dict[str, Any]:
        facts = self.state.facts
        return {
            "flow": self.state.flow,
            "version": self.state.version,
            "chat_id": facts.chat_id,
            "user_id": facts.user_id,
        }

    def emit(self, event_type: str, data: EventData) -> None:
        self.effects.append(Emit(type=event_type, data=data))

    def record(self, from_step: str | None, to_step: str | None, summary: str) -> None:
        self.effects.append(
            Transition(from_step=from_step, to_step=to_step, summary=summary, at=self.now)
        )

    # --- moving through steps

    def go(self, from_step: str | None, to_step: str | None, summary: str) -> None:
        """Move to `to_step` and run on until a step waits or ends."""
        for _ in range(len(self.flow.steps) + 1):  # checked flows have no loop that never waits
            if to_step is None:
                self.fail(from_step, "no next step after it")
                return
            self.record(from_step, to_step, summary)
            step = self.flow.step(to_step)
            self.update(step=step.id, tries=0)
            following = self.enter(step)
            if following is None:
                return
            from_step, (to_step, summary) = step.id, following
        self.fail(from_step, "a loop of steps that never wait")

    def enter(self, step: Step) -> tuple[str | None, str] | None:
        """Carry out `step`; where to go on and why, or none when it waits or ends."""
        if isinstance(step, SayStep):
            if not self.say(step.id, step.message):
                return None
            return next_of(self.flow, step), "said"
        if isinstance(step, BranchStep):
            return self.branch(step)
        if isinstance(step, AskStep):
            buttons = _choices(step)
            if self.say(step.id, step.message, buttons):
                self.update(status=Status.ACTIVE)
            return None
        if isinstance(step, ConfirmStep):
            if self.say(step.id, step.message, _yes_no(step)):
                self.update(status=Status.ACTIVE)
            return None
        if isinstance(step, CallStep):
            self.request(step)
            return None
        if step.message is not None and not self.say(step.id, step.message):
            return None
        if isinstance(step, HandoffStep):
            self.effects.append(
                OpenTicket(variables=dict(self.state.variables), summary=self.ticket_summary())
            )
        self.complete()
        return None

    def say(self, step_id: str, template: str, buttons: tuple[Choice, ...] = ()) -> bool:
        """Send the rendered message; a message that does not render fails the conversation."""
        try:
            text = templates.render(
                template, self.context(), checks.variables(self.flow), kind="flow messages"
            )
        except templates.RenderFailed as exc:
            self.fail(step_id, f"the message did not render: {exc.message}")
            return False
        self.effects.append(SendMessage(text=text, buttons=buttons))
        return True

    def context(self) -> dict[str, Any]:
        facts = self.state.facts
        names = checks.variables(self.flow)
        context: dict[str, Any] = {
            name: self.state.variables.get(name) for name in names if names[name] is None
        }
        context["user"] = {
            "id": facts.user_id,
            "first_name": facts.first_name,
            "last_name": facts.last_name,
            "username": facts.username,
            "language_code": facts.language_code,
        }
        context["chat"] = {"id": facts.chat_id}
        return context

    def branch(self, step: BranchStep) -> tuple[str | None, str]:
        for position, condition in enumerate(step.conditions):
            if holds(condition, self.context()):
                return condition.next, f"conditions[{position}] held"
        return step.default, "no condition held: default"

    def request(self, step: CallStep) -> None:
        variables = self.state.variables
        sent = variables if step.send is None else {n: variables.get(n) for n in step.send}
        facts = self.state.facts
        payload = {
            "flow": self.state.flow,
            "version": self.state.version,
            "step": step.id,
            "user": {
                "id": facts.user_id,
                "first_name": facts.first_name,
                "last_name": facts.last_name,
                "username": facts.username,
                "language_code": facts.language_code,
            },
            "chat": {"id": facts.chat_id},
            "variables": dict(sent),
        }
        self.effects.append(
            RequestCall(
                step=step.id,
                url=step.url,
                payload=payload,
                timeout_seconds=step.timeout_seconds,
                deadline=self.now + timedelta(seconds=step.deadline_seconds),
            )
        )
        self.update(status=Status.CALLING)

    def complete(self) -> None:
        self.update(status=Status.COMPLETED)
        self.emit(
            "conversation.completed",
            ConversationCompletedData(**self.who(), variables=dict(self.state.variables)),
        )

    def abandon(self, reason: AbandonReason, summary: str) -> None:
        step = self.state.step
        self.record(step, None, summary)
        self.update(status=Status.ABANDONED, reason=reason)
        self.emit(
            "conversation.abandoned",
            ConversationAbandonedData(**self.who(), reason=reason, step=step),
        )

    def fail(self, step_id: str | None, reason: str) -> None:
        """The step failed with nowhere to go: say so in an event, and abandon."""
        step = step_id if step_id is not None else self.state.step
        self.emit(
            "conversation.step_failed",
            ConversationStepFailedData(**self.who(), step=step, reason=reason),
        )
        self.update(step=step)
        self.abandon(AbandonReason.FAILED, f"failed: {reason}")

    def failed_towards(self, step_id: str, target: str | None, reason: str) -> None:
        """The step failed: go to `target` when there is one, else abandon as failed."""
        if target is None:
            self.fail(step_id, reason)
            return
        self.emit(
            "conversation.step_failed",
            ConversationStepFailedData(**self.who(), step=step_id, reason=reason),
        )
        self.go(step_id, target, f"failed: {reason}")

    # --- what moves a waiting step

    def ask_answered(self, step: AskStep, answer: Answer) -> None:
        self.update(last_input_at=self.now)
        described = MASK if step.sensitive else describe(answer)
        verdict = inputs.judge(step, answer)
        if isinstance(verdict, inputs.Accepted):
            self.update(variables={**self.state.variables, step.variable: verdict.value})
            self.go(step.id, next_of(self.flow, step), f"answered {described}")
            return
        tries = self.state.tries + 1
        self.record(step.id, step.id, f"refused {described}: {verdict.reason}")
        if tries >= step.max_tries:
            self.failed_towards(step.id, step.on_exhausted, f"{tries} invalid answers")
            return
        self.update(tries=tries)
        self.say(step.id, step.retry_message or verdict.reason, _choices(step))

    def confirm_answered(self, step: ConfirmStep, answer: Answer) -> None:
        self.update(last_input_at=self.now)
        said = answer.text.strip().casefold() if isinstance(answer, Text) else None
        if answer == Button(data=f"{step.id}:yes") or said in ("yes", step.yes_label.casefold()):
            self.go(step.id, step.yes, f"answered {describe(answer)}: yes")
        elif answer == Button(data=f"{step.id}:no") or said in ("no", step.no_label.casefold()):
            self.go(step.id, step.no, f"answered {describe(answer)}: no")
        else:
            self.record(step.id, step.id, f"refused {describe(answer)}: not yes or no")
            self.say(step.id, step.message, _yes_no(step))

    def answered(self, step: CallStep, answer: Any) -> None:
        # The idle clock restarts: the user waited for the app, not the other way round.
        self.update(last_input_at=self.now)
        problem, variables, chosen = _read_answer(self.flow, answer)
        if problem is not None:
            self.failed_towards(step.id, step.on_failure, problem)
            return
        self.update(variables={**self.state.variables, **variables})
        names = ", ".join(sorted(variables)) or "nothing"
        target = chosen if chosen is not None else next_of(self.flow, step)
        self.go(step.id, target, f"the app answered: set {names}")

    def call_failed(self, step: CallStep, failure: CallFailed) -> None:
        tries = self.state.tries + 1
        self.update(tries=tries)
        if failure.deadline_passed:
            self.update(last_input_at=self.now)  # as for an answer: the user was not idle
            reason = f"the app did not answer before the deadline: {failure.reason}"
            self.failed_towards(step.id, step.on_failure, reason)
            return
        if tries == 1:
            self.emit(
                "conversation.step_failed",
                ConversationStepFailedData(**self.who(), step=step.id, reason=failure.reason),
            )
            if step.fallback_text is not None:
                self.say(step.id, step.fallback_text)

    def ticket_summary(self) -> str:
        sensitive = {
            step.variable
            for step in self.flow.steps
            if isinstance(step, AskStep) and step.sensitive
        }
        lines = [
            f"{name}: {MASK if name in sensitive else _shown(value)}"
            for name, value in sorted(self.state.variables.items())
        ]
        return "\n".join(lines)


def _choices(step: AskStep) -> tuple[Choice, ...]:
    if not isinstance(step.input, ChoiceInput):
        return ()
    return tuple(
        Choice(text=option.label, data=inputs.button_data(step.id, option.key))
        for option in step.input.choices
    )


def _yes_no(step: ConfirmStep) -> tuple[Choice, ...]:
    return (
        Choice(text=step.yes_label, data=inputs.button_data(step.id, "yes")),
        Choice(text=step.no_label, data=inputs.button_data(step.id, "no")),
    )


def _read_answer(flow: Flow, answer: Any) -> tuple[str | None, dict[str, Any], str | None]:
    """A call's JSON answer read: (problem, variables it sets, the next step it picks)."""
    if answer is None:
        return None, {}, None
    if not isinstance(answer, dict):
        return "the app's answer is not a JSON object", {}, None
    variables = answer.get("variables", {})
    if not isinstance(variables, dict):
        return "the app's answer has variables that are not an object", {}, None
    chosen = answer.get("next")
    if chosen is not None and (
        not isinstance(chosen, str) or chosen not in {step.id for step in flow.steps}
    ):
        return "the app's answer picks a next step the flow does not have", {}, None
    return None, variables, chosen


def holds(condition: Condition, context: dict[str, Any]) -> bool:
    """Whether the condition holds for the variables (a missing variable is null).
    `matches` is a full match of a string value; lt/le/gt/ge compare numbers with numbers
    and strings with strings, and are false otherwise."""
    name, _, attribute = condition.variable.partition(".")
    value = context.get(name)
    if attribute and isinstance(value, dict):
        value = value.get(attribute)
    expected = condition.value
    match condition.op:
        case "exists":
            return value is not None
        case "missing":
            return value is None
        case "eq":
            return bool(value == expected)
        case "ne":
            return bool(value != expected)
        case "in":
            return isinstance(expected, list) and value in expected
        case "not_in":
            return isinstance(expected, list) and value not in expected
        case "matches":
            return (
                isinstance(value, str)
                and isinstance(expected, str)
                and re.fullmatch(expected, value) is not None
            )
    return _compare(condition.op, value, expected)


def _compare(op: str, value: Any, expected: Any) -> bool:
    numbers = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, expected)
    )
    strings = isinstance(value, str) and isinstance(expected, str)
    if not (numbers or strings):
        return False
    comparisons: dict[str, bool] = {
        "lt": value < expected,
        "le": value <= expected,
        "gt": value > expected,
        "ge": value >= expected,
    }
    return comparisons[op]


def describe(answer: Answer) -> str:
    """An answer as the history shows it (for a step that is not sensitive)."""
    if isinstance(answer, Text):
        text = answer.text
        cut = text if len(text) <= _SUMMARY_LENGTH else text[:_SUMMARY_LENGTH] + "…"
        return f"text {cut!r}"
    if isinstance(answer, Button):
        return f"button {answer.data!r}"
    if isinstance(answer, Photo):
        return f"photo {answer.file_unique_id}"
    if isinstance(answer, Location):
        return f"location {answer.latitude}, {answer.longitude}"
    assert isinstance(answer, Contact)
    return f"contact {answer.first_name} {answer.phone_number}"


def _shown(value: Any) -> str:
    return "" if value is None else str(value)
