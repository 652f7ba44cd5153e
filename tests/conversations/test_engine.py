"""conversations.engine: each step kind, each input, and the failure and timeout paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tgrelay.conversations import checks, engine
from tgrelay.conversations.engine import (
    Choice,
    Emit,
    OpenTicket,
    RequestCall,
    SendMessage,
    Transition,
)
from tgrelay.conversations.flow import Condition, Flow
from tgrelay.conversations.models import (
    AbandonReason,
    Button,
    CallFailed,
    CallSucceeded,
    Cancel,
    ConversationAbandonedData,
    ConversationCompletedData,
    ConversationStartedData,
    ConversationStepFailedData,
    Facts,
    IdleTimeout,
    Input,
    Photo,
    Start,
    State,
    Status,
    Text,
)

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FACTS = Facts(user_id=7, chat_id=7, first_name="Ann", username="ann")
WHO = {"flow": "f", "version": 3, "chat_id": 7, "user_id": 7}


def flow(*steps: dict[str, Any], timeout_seconds: int = 900) -> Flow:
    """A checked flow `f` started by /f with these steps."""
    return checks.parse(
        {
            "name": "f",
            "trigger": {"type": "command", "command": "/f"},
            "timeout_seconds": timeout_seconds,
            "steps": list(steps),
        }
    )


def started(subject: Flow) -> State:
    """The state after starting `subject` at AT."""
    state, _ = engine.advance(subject, None, Start(version=3, facts=FACTS), AT)
    assert state is not None
    return state


def feed(subject: Flow, state: State, *events: Input, at: datetime = AT) -> tuple[State, list[Any]]:
    """The state after `events`, and all the effects they produced, in order."""
    effects: list[Any] = []
    for event in events:
        moved, produced = engine.advance(subject, state, event, at)
        assert moved is not None
        state = moved
        effects.extend(produced)
    return state, effects


def moved(from_step: str | None, to_step: str | None, summary: str) -> Transition:
    return Transition(from_step=from_step, to_step=to_step, summary=summary, at=AT)


def failed(step: str, reason: str) -> Emit:
    return Emit(
        type="conversation.step_failed",
        data=ConversationStepFailedData(**WHO, step=step, reason=reason),
    )


def abandoned(step: str, reason: AbandonReason) -> Emit:
    return Emit(
        type="conversation.abandoned",
        data=ConversationAbandonedData(**WHO, reason=reason, step=step),
    )


def completed(**variables: Any) -> Emit:
    return Emit(
        type="conversation.completed",
        data=ConversationCompletedData(**WHO, variables=variables),
    )


ASK_ZIP = {
    "id": "zip",
    "kind": "ask",
    "message": "Zip, {{ user.first_name }}?",
    "input": {"type": "text", "pattern": r"\d{5}"},
    "variable": "zip",
    "retry_message": "Five digits, please.",
    "max_tries": 2,
}
END = {"id": "done", "kind": "end", "message": "Thanks, {{ zip }}."}


def test_start_runs_through_say_steps_to_the_first_waiting_step() -> None:
    """Start emits conversation.started, says the say step and waits at the ask step."""
    subject = flow(
        {"id": "hi", "kind": "say", "message": "Hello @{{ user.username }}"}, ASK_ZIP, END
    )

    state, effects = engine.advance(subject, None, Start(version=3, facts=FACTS), AT)

    assert state == State(
        flow="f",
        version=3,
        step="zip",
        variables={},
        tries=0,
        status=Status.ACTIVE,
        facts=FACTS,
        started_at=AT,
        last_input_at=AT,
    )
    assert effects == (
        Emit(type="conversation.started", data=ConversationStartedData(**WHO)),
        moved(None, "hi", "start"),
        SendMessage(text="Hello @ann"),
        moved("hi", "zip", "said"),
        SendMessage(text="Zip, Ann?"),
    )


def test_a_valid_answer_sets_the_variable_and_reaches_the_end() -> None:
    """The answer sets the step's variable; the end step says its message and completes."""
    subject = flow(ASK_ZIP, END)

    state, effects = feed(subject, started(subject), Text(text="10115"), at=AT)

    assert (state.status, state.step, state.variables, state.reason) == (
        Status.COMPLETED,
        "done",
        {"zip": "10115"},
        None,
    )
    assert effects == [
        moved("zip", "done", "answered text '10115'"),
        SendMessage(text="Thanks, 10115."),
        completed(zip="10115"),
    ]


def test_invalid_answers_get_the_retry_message_then_fail_the_conversation() -> None:
    """Each invalid answer counts a try and gets the retry message; the last one fails."""
    subject = flow(ASK_ZIP, END)

    after_one, first = feed(subject, started(subject), Text(text="abc"))
    after_two, second = feed(subject, after_one, Text(text="abcd"))

    assert (after_one.status, after_one.tries) == (Status.ACTIVE, 1)
    assert first == [
        moved("zip", "zip", "refused text 'abc': That is not in the expected format."),
        SendMessage(text="Five digits, please."),
    ]
    assert (after_two.status, after_two.reason, after_two.step) == (
        Status.ABANDONED,
        AbandonReason.FAILED,
        "zip",
    )
    assert second == [
        moved("zip", "zip", "refused text 'abcd': That is not in the expected format."),
        failed("zip", "2 invalid answers"),
        moved("zip", None, "failed: 2 invalid answers"),
        abandoned("zip", AbandonReason.FAILED),
    ]


def test_tries_exhausted_take_on_exhausted_and_the_default_retry_is_the_reason() -> None:
    """Without a retry message the reason is sent; with on_exhausted the flow goes there."""
    ask = {**ASK_ZIP, "retry_message": None, "on_exhausted": "human"}
    subject = flow(ask, END, {"id": "human", "kind": "handoff"})

    state, effects = feed(
        subject, started(subject), Text(text="x"), Photo(file_id="p", file_unique_id="u")
    )

    assert (state.status, state.step) == (Status.COMPLETED, "human")
    assert effects == [
        moved("zip", "zip", "refused text 'x': That is not in the expected format."),
        SendMessage(text="That is not in the expected format."),
        moved("zip", "zip", "refused photo u: Please send text."),
        failed("zip", "2 invalid answers"),
        moved("zip", "human", "failed: 2 invalid answers"),
        OpenTicket(variables={}, summary=""),
        completed(),
    ]


def test_a_sensitive_answer_is_masked_in_history_and_ticket_but_not_in_completed() -> None:
    """History rows and the ticket summary show *** for a sensitive answer; the completed
    event carries the value for the team's app."""
    card = {
        "id": "card",
        "kind": "ask",
        "message": "Card?",
        "input": {"type": "text", "pattern": r"\d{4}"},
        "variable": "card",
        "sensitive": True,
    }
    name = {
        "id": "name",
        "kind": "ask",
        "message": "Name?",
        "input": {"type": "text"},
        "variable": "name",
    }
    subject = flow(
        card, name, {"id": "human", "kind": "handoff", "message": "A colleague takes over."}
    )

    _, effects = feed(
        subject, started(subject), Text(text="12x4"), Text(text="1234"), Text(text="Ann")
    )

    assert effects == [
        moved("card", "card", "refused ***: That is not in the expected format."),
        SendMessage(text="That is not in the expected format."),
        moved("card", "name", "answered ***"),
        SendMessage(text="Name?"),
        moved("name", "human", "answered text 'Ann'"),
        SendMessage(text="A colleague takes over."),
        OpenTicket(variables={"card": "1234", "name": "Ann"}, summary="card: ***\nname: Ann"),
        completed(card="1234", name="Ann"),
    ]


def test_choice_buttons_are_sent_and_a_stale_button_changes_nothing() -> None:
    """A choice step sends one button per choice; a button of another step is ignored."""
    pick = {
        "id": "plan",
        "kind": "ask",
        "message": "Plan?",
        "input": {
            "type": "choice",
            "choices": [{"label": "Basic", "value": "b"}, {"label": "Pro"}],
        },
        "variable": "plan",
    }
    subject = flow(pick, {"id": "done", "kind": "end"})
    state, start_effects = engine.advance(subject, None, Start(version=3, facts=FACTS), AT)
    assert state is not None

    stale, stale_effects = feed(subject, state, Button(data="old:b"))
    done, effects = feed(subject, state, Button(data="plan:Pro"))

    assert start_effects[-1] == SendMessage(
        text="Plan?",
        buttons=(Choice(text="Basic", data="plan:b"), Choice(text="Pro", data="plan:Pro")),
    )
    assert (stale, stale_effects) == (state, [])
    assert (done.status, done.variables) == (Status.COMPLETED, {"plan": "Pro"})
    assert effects == [moved("plan", "done", "answered button 'plan:Pro'"), completed(plan="Pro")]


CONFIRM = {
    "id": "ok",
    "kind": "confirm",
    "message": "Sure?",
    "yes": "yes_end",
    "no": "no_end",
    "yes_label": "Save",
}


@pytest.mark.parametrize(
    ("answer", "step", "summary"),
    [
        (Button(data="ok:yes"), "yes_end", "answered button 'ok:yes': yes"),
        (Button(data="ok:no"), "no_end", "answered button 'ok:no': no"),
        (Text(text=" save "), "yes_end", "answered text ' save ': yes"),
        (Text(text="No"), "no_end", "answered text 'No': no"),
    ],
)
def test_confirm_goes_to_yes_or_no(answer: Button | Text, step: str, summary: str) -> None:
    """A confirm step takes its buttons, or its labels and yes/no typed, to `yes` or `no`."""
    subject = flow(CONFIRM, {"id": "yes_end", "kind": "end"}, {"id": "no_end", "kind": "end"})

    state, effects = feed(subject, started(subject), answer)

    assert (state.status, state.step) == (Status.COMPLETED, step)
    assert effects == [moved("ok", step, summary), completed()]


def test_confirm_asks_again_on_anything_else() -> None:
    """Text that is neither answer re-sends the question with its buttons, counting no try."""
    subject = flow(CONFIRM, {"id": "yes_end", "kind": "end"}, {"id": "no_end", "kind": "end"})

    state, effects = feed(subject, started(subject), Text(text="maybe"))

    assert (state.status, state.step, state.tries) == (Status.ACTIVE, "ok", 0)
    assert effects == [
        moved("ok", "ok", "refused text 'maybe': not yes or no"),
        SendMessage(
            text="Sure?",
            buttons=(Choice(text="Save", data="ok:yes"), Choice(text="No", data="ok:no")),
        ),
    ]


def context(**variables: Any) -> dict[str, Any]:
    return {**variables, "user": {"id": 7, "username": "ann"}, "chat": {"id": 7}}


@pytest.mark.parametrize(
    ("variable", "op", "value", "variables", "expected"),
    [
        ("n", "eq", 3, {"n": 3}, True),
        ("n", "eq", 3, {"n": "3"}, False),
        ("n", "ne", 3, {}, True),
        ("n", "lt", 3, {"n": 2}, True),
        ("n", "le", 3, {"n": 3}, True),
        ("n", "gt", 3, {"n": 3}, False),
        ("n", "ge", 3, {"n": 3.0}, True),
        ("n", "gt", 3, {"n": "4"}, False),  # a string and a number never compare
        ("n", "gt", "a", {"n": "b"}, True),
        ("n", "gt", 3, {"n": True}, False),
        ("n", "in", ["DE", "FR"], {"n": "FR"}, True),
        ("n", "not_in", ["DE", "FR"], {"n": "GB"}, True),
        ("n", "matches", r"\d{5}", {"n": "10115"}, True),
        ("n", "matches", r"\d{5}", {"n": "101150"}, False),  # a full match
        ("n", "matches", r"\d", {"n": 5}, False),
        ("n", "exists", None, {"n": 0}, True),
        ("n", "exists", None, {"n": None}, False),
        ("n", "missing", None, {}, True),
        ("user.username", "eq", "ann", {}, True),
        ("chat.id", "gt", 0, {}, True),
    ],
)
def test_branch_conditions(
    variable: str, op: str, value: Any, variables: dict[str, Any], expected: bool
) -> None:
    """Each operator compares the variable (null when missing) with the condition's value."""
    condition = Condition.model_validate(
        {"variable": variable, "op": op, "value": value, "next": "x"}
    )

    assert engine.holds(condition, context(**variables)) is expected


def test_a_branch_takes_the_first_condition_that_holds_else_the_default() -> None:
    """Conditions are tried in order; the default takes over when none holds."""
    n = {"id": "n", "kind": "ask", "message": "n?", "input": {"type": "number"}, "variable": "n"}
    route = {
        "id": "route",
        "kind": "branch",
        "conditions": [
            {"variable": "n", "op": "gt", "value": 10, "next": "big"},
            {"variable": "n", "op": "gt", "value": 0, "next": "small"},
        ],
        "default": "none",
    }
    ends = [{"id": name, "kind": "end"} for name in ("big", "small", "none")]
    subject = flow(n, route, *ends)

    outcomes = [feed(subject, started(subject), Text(text=text)) for text in ("11", "5", "0")]

    assert [state.step for state, _ in outcomes] == ["big", "small", "none"]
    assert outcomes[1][1][:2] == [
        moved("n", "route", "answered text '5'"),
        moved("route", "small", "conditions[1] held"),
    ]
    assert outcomes[2][1][1] == moved("route", "none", "no condition held: default")


CALL: dict[str, Any] = {
    "id": "app",
    "kind": "call",
    "url": "https://app.example/validate",
    "timeout_seconds": 5,
    "send": ["zip"],
    "sets": ["city"],
    "fallback_text": "Slow today, {{ user.first_name }}; I will carry on.",
    "deadline_seconds": 600,
    "on_failure": "sorry",
}
CALL_FLOW: list[dict[str, Any]] = [
    {**ASK_ZIP, "max_tries": 3},
    {
        "id": "note",
        "kind": "ask",
        "message": "Note?",
        "input": {"type": "text"},
        "variable": "note",
    },
    CALL,
    {"id": "done", "kind": "end", "message": "{{ city }}"},
    {"id": "other", "kind": "end", "message": "other"},
    {"id": "sorry", "kind": "end", "message": "sorry"},
]


def calling() -> tuple[Flow, State, list[Any]]:
    """The call flow waiting for the app, and the effects that got it there."""
    subject = flow(*CALL_FLOW)
    state, effects = feed(subject, started(subject), Text(text="10115"), Text(text="hi"))
    return subject, state, effects


def test_a_call_step_requests_the_call_with_the_variables_it_sends() -> None:
    """The call step asks the runtime to POST the sent variables and waits in `calling`."""
    _, state, effects = calling()

    assert (state.status, state.step) == (Status.CALLING, "app")
    assert effects[-1] == RequestCall(
        step="app",
        url="https://app.example/validate",
        payload={
            "flow": "f",
            "version": 3,
            "step": "app",
            "user": {
                "id": 7,
                "first_name": "Ann",
                "last_name": None,
                "username": "ann",
                "language_code": None,
            },
            "chat": {"id": 7},
            "variables": {"zip": "10115"},
        },
        timeout_seconds=5,
        deadline=AT + timedelta(seconds=600),
    )


@pytest.mark.parametrize(
    ("answer", "step", "variables", "summary"),
    [
        (
            {"variables": {"city": "Berlin"}},
            "done",
            {"city": "Berlin"},
            "the app answered: set city",
        ),
        ({"next": "other"}, "other", {}, "the app answered: set nothing"),
        (None, "done", {}, "the app answered: set nothing"),
    ],
)
def test_the_apps_answer_sets_variables_and_may_pick_the_next_step(
    answer: Any, step: str, variables: dict[str, Any], summary: str
) -> None:
    """The answer's variables are merged; its `next` (a step of the flow) wins over the step's."""
    subject, state, _ = calling()

    done, effects = feed(subject, state, CallSucceeded(step="app", answer=answer))

    assert (done.status, done.step, done.variables) == (
        Status.COMPLETED,
        step,
        {"zip": "10115", "note": "hi", **variables},
    )
    assert effects[0] == moved("app", step, summary)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"next": "nowhere"}, "the app's answer picks a next step the flow does not have"),
        ([1], "the app's answer is not a JSON object"),
        ({"variables": [1]}, "the app's answer has variables that are not an object"),
    ],
)
def test_an_unusable_answer_takes_on_failure(answer: Any, reason: str) -> None:
    """An answer naming an unknown step or of the wrong shape is a failure: on_failure."""
    subject, state, _ = calling()

    done, effects = feed(subject, state, CallSucceeded(step="app", answer=answer))

    assert (done.status, done.step) == (Status.COMPLETED, "sorry")
    assert effects == [
        failed("app", reason),
        moved("app", "sorry", f"failed: {reason}"),
        SendMessage(text="sorry"),
        completed(zip="10115", note="hi"),
    ]


def test_a_failed_call_sends_the_fallback_once_then_resumes_when_it_succeeds() -> None:
    """The first failure sends the fallback text and a step_failed event; later failures
    before the deadline only count; success then goes on."""
    subject, state, _ = calling()

    waiting, failures = feed(
        subject,
        state,
        CallFailed(step="app", reason="HTTP 503", deadline_passed=False),
        CallFailed(step="app", reason="timed out", deadline_passed=False),
        Text(text="hello?"),  # the user writes while the app is called: it waits
    )
    done, _ = feed(subject, waiting, CallSucceeded(step="app", answer={"variables": {"city": "B"}}))

    assert (waiting.status, waiting.step, waiting.tries) == (Status.CALLING, "app", 2)
    assert failures == [
        failed("app", "HTTP 503"),
        SendMessage(text="Slow today, Ann; I will carry on."),
    ]
    assert (done.status, done.step, done.tries) == (Status.COMPLETED, "done", 0)


def test_a_call_past_its_deadline_takes_on_failure_or_fails() -> None:
    """When the deadline passes the step's on_failure is taken; without one it fails."""
    subject, state, _ = calling()
    bare = flow(
        *[{**step, "on_failure": None} if step["id"] == "app" else step for step in CALL_FLOW]
    )
    bare_state, _ = feed(bare, started(bare), Text(text="10115"), Text(text="hi"))
    past = CallFailed(step="app", reason="HTTP 503", deadline_passed=True)
    reason = "the app did not answer before the deadline: HTTP 503"

    handled, handled_effects = feed(subject, state, past)
    stopped, stopped_effects = feed(bare, bare_state, past)

    assert (handled.status, handled.step) == (Status.COMPLETED, "sorry")
    assert handled_effects[:2] == [
        failed("app", reason),
        moved("app", "sorry", f"failed: {reason}"),
    ]
    assert (stopped.status, stopped.reason) == (Status.ABANDONED, AbandonReason.FAILED)
    assert stopped_effects == [
        failed("app", reason),
        moved("app", None, f"failed: {reason}"),
        abandoned("app", AbandonReason.FAILED),
    ]


def test_call_outcomes_for_another_step_change_nothing() -> None:
    """A late outcome of an earlier call, or one while the user is asked, is ignored."""
    subject, state, _ = calling()
    asked = started(subject)

    assert [
        feed(subject, state, CallSucceeded(step="old", answer={})),
        feed(subject, asked, CallFailed(step="app", reason="x", deadline_passed=True)),
    ] == [(state, []), (asked, [])]


def test_idle_timeout_abandons_only_when_idle_long_enough() -> None:
    """A timer firing early (a newer input moved the idle clock) or while the app is called
    changes nothing; one past timeout_seconds abandons with reason timeout."""
    subject = flow(ASK_ZIP, END, timeout_seconds=60)
    state = started(subject)
    _, calling_state, _ = calling()

    early = feed(subject, state, IdleTimeout(), at=AT + timedelta(seconds=59))
    while_calling = feed(flow(*CALL_FLOW), calling_state, IdleTimeout(), at=AT + timedelta(days=1))
    late, effects = feed(subject, state, IdleTimeout(), at=AT + timedelta(seconds=60))

    assert (early, while_calling) == ((state, []), (calling_state, []))
    assert (late.status, late.reason) == (Status.ABANDONED, AbandonReason.TIMEOUT)
    assert effects == [
        Transition(
            from_step="zip", to_step=None, summary="idle timeout", at=AT + timedelta(seconds=60)
        ),
        abandoned("zip", AbandonReason.TIMEOUT),
    ]


def test_cancel_abandons_and_a_finished_conversation_never_moves_again() -> None:
    """Cancel abandons an active conversation; after it every input changes nothing."""
    subject = flow(ASK_ZIP, END)

    cancelled, effects = feed(subject, started(subject), Cancel())
    after = [
        engine.advance(subject, cancelled, event, AT + timedelta(hours=1))
        for event in (Text(text="10115"), Cancel(), IdleTimeout(), Start(version=3, facts=FACTS))
    ]

    assert (cancelled.status, cancelled.reason) == (Status.ABANDONED, AbandonReason.CANCEL)
    assert effects == [moved("zip", None, "cancel"), abandoned("zip", AbandonReason.CANCEL)]
    assert after == [(cancelled, ())] * 4


def test_an_input_before_start_creates_nothing() -> None:
    """Without a state only Start begins a conversation."""
    assert engine.advance(flow(ASK_ZIP, END), None, Text(text="hi"), AT) == (None, ())


def test_a_message_that_fails_to_render_fails_the_conversation() -> None:
    """A template error at render time (a type error) abandons with a step_failed reason."""
    subject = flow(
        {"id": "hi", "kind": "say", "message": "{{ chat.id + 'x' }}"}, {"id": "done", "kind": "end"}
    )

    state, effects = engine.advance(subject, None, Start(version=3, facts=FACTS), AT)

    assert state is not None
    assert (state.status, state.reason, state.step) == (
        Status.ABANDONED,
        AbandonReason.FAILED,
        "hi",
    )
    reason = (
        "the message did not render: TypeError: unsupported operand type(s) for +: 'int' and 'str'"
    )
    assert effects[-3:] == (
        failed("hi", reason),
        moved("hi", None, f"failed: {reason}"),
        abandoned("hi", AbandonReason.FAILED),
    )
