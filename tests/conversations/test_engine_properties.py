"""conversations.engine's properties over generated flows and input sequences: the state
stays valid, every advance ends waiting or finished, a finished conversation never moves,
the same arguments give the same result, and sensitive answers stay out of the history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tgrelay.conversations import checks, engine
from tgrelay.conversations.flow import AskStep, CallStep, ConfirmStep, EndStep, Flow, HandoffStep
from tgrelay.conversations.models import (
    Button,
    CallFailed,
    CallSucceeded,
    Cancel,
    Contact,
    Facts,
    IdleTimeout,
    Input,
    Location,
    Photo,
    Start,
    State,
    Status,
    Text,
)

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
FACTS = Facts(user_id=7, chat_id=7, first_name="Ann")
INPUTS = [
    {"type": "text"},
    {"type": "text", "pattern": r"8\d+8", "max_length": 6},
    {"type": "number", "min": 0},
    {"type": "email"},
    {"type": "date", "min": "2020-01-01"},
    {"type": "choice", "choices": [{"label": "A", "value": "a"}, {"label": "B", "value": "b"}]},
    {"type": "photo"},
]
OPS = ["eq", "ne", "lt", "gt", "in", "matches", "exists", "missing"]
VALUES: dict[str, Any] = {"in": ["a", "b"], "matches": r"8\d+8", "lt": 900000, "gt": 5}


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    """A valid flow of 2 to 8 steps: say and branch steps point forward only (so they cannot
    loop), waiting steps anywhere; the last step ends or hands off."""
    count = draw(st.integers(min_value=2, max_value=8))
    ids = [f"s{index}" for index in range(count)]

    def anywhere() -> str | None:
        return draw(st.one_of(st.none(), st.sampled_from(ids)))

    def forward(index: int) -> str:
        return draw(st.sampled_from(ids[index + 1 :]))

    steps: list[dict[str, Any]] = []
    for index, step_id in enumerate(ids[:-1]):
        kind = draw(st.sampled_from(["ask", "ask", "say", "branch", "confirm", "call"]))
        message = f"m{index} {{{{ user.first_name }}}}"
        if kind == "ask":
            steps.append(
                {
                    "id": step_id,
                    "kind": "ask",
                    "message": message,
                    "input": draw(st.sampled_from(INPUTS)),
                    "variable": f"v{index}",
                    "max_tries": draw(st.integers(min_value=1, max_value=3)),
                    "on_exhausted": anywhere(),
                    "sensitive": draw(st.booleans()),
                    "next": anywhere(),
                }
            )
        elif kind == "say":
            steps.append({"id": step_id, "kind": "say", "message": message, "next": forward(index)})
        elif kind == "branch":
            op = draw(st.sampled_from(OPS))
            variables = ["chat.id", *(step["variable"] for step in steps if step["kind"] == "ask")]
            steps.append(
                {
                    "id": step_id,
                    "kind": "branch",
                    "conditions": [
                        {
                            "variable": draw(st.sampled_from(variables)),
                            "op": op,
                            "value": VALUES.get(op, 7),
                            "next": forward(index),
                        }
                    ],
                    "default": forward(index),
                }
            )
        elif kind == "confirm":
            steps.append(
                {
                    "id": step_id,
                    "kind": "confirm",
                    "message": message,
                    "yes": draw(st.sampled_from(ids)),
                    "no": draw(st.sampled_from(ids)),
                }
            )
        else:
            steps.append(
                {
                    "id": step_id,
                    "kind": "call",
                    "url": "https://app.example/step",
                    "sets": [f"c{index}"],
                    "fallback_text": f"wait {index}",
                    "next": anywhere(),
                    "on_failure": anywhere(),
                }
            )
    last = draw(st.sampled_from(["end", "handoff"]))
    steps.append({"id": ids[-1], "kind": last, "message": "bye {{ user.first_name }}"})
    document = {"name": "gen", "trigger": {"type": "api"}, "timeout_seconds": 600, "steps": steps}
    try:
        return checks.parse(document)
    except checks.FlowInvalid:
        assume(False)
        raise


@dataclass(frozen=True)
class Action:
    """An abstract input, made concrete against the state it is given to."""

    kind: str
    pick: int
    wait: int  # seconds since the previous input


ACTIONS = st.builds(
    Action,
    kind=st.sampled_from(
        [
            "number",
            "word",
            "email",
            "date",
            "button",
            "stale_button",
            "photo",
            "location",
            "contact",
            "call_ok",
            "call_next",
            "call_bad",
            "call_failed",
            "call_deadline",
            "timeout",
            "cancel",
        ]
    ),
    pick=st.integers(min_value=0, max_value=20),
    wait=st.sampled_from([0, 1, 30, 700]),
)


def elapsed(action: Action) -> timedelta:
    """The time before the action; an idle timer fires late, so sometimes past the timeout."""
    return timedelta(seconds=action.wait + (400 if action.kind == "timeout" else 0))


def concrete(action: Action, state: State, flow: Flow, serial: int) -> Input:
    """The input `action` stands for; texts carry a serial so each is unique."""
    ids = [step.id for step in flow.steps]
    match action.kind:
        case "number":
            return Text(text=f"8{serial:04d}8")
        case "word":
            return Text(text=f"w{serial:04d}x")
        case "email":
            return Text(text=f"e{serial:04d}@example.com")
        case "date":
            return Text(text=f"2026-01-{serial % 28 + 1:02d}")
        case "button":
            value = ("a", "b", "yes", "no")[action.pick % 4]
            return Button(data=f"{state.step}:{value}")
        case "stale_button":
            return Button(data=f"gone:{action.pick}")
        case "photo":
            return Photo(file_id=f"f{serial}", file_unique_id=f"u{serial:04d}")
        case "location":
            return Location(latitude=52.5, longitude=13.4)
        case "contact":
            return Contact(phone_number=f"4930{serial:06d}", first_name="Ann")
        case "call_ok":
            return CallSucceeded(step=state.step, answer={"variables": {"c1": action.pick}})
        case "call_next":
            return CallSucceeded(step=state.step, answer={"next": ids[action.pick % len(ids)]})
        case "call_bad":
            return CallSucceeded(step=state.step, answer={"next": "nowhere"})
        case "call_failed":
            return CallFailed(step=state.step, reason="HTTP 503", deadline_passed=False)
        case "call_deadline":
            return CallFailed(step=state.step, reason="HTTP 503", deadline_passed=True)
        case "timeout":
            return IdleTimeout()
    return Cancel()


def assert_valid(flow: Flow, state: State) -> None:
    """The state names a step of the flow, and its status fits that step."""
    step = flow.step(state.step)
    waiting_at = {
        Status.ACTIVE: (AskStep, ConfirmStep),
        Status.CALLING: (CallStep,),
        Status.COMPLETED: (EndStep, HandoffStep),
    }
    if state.status is Status.ABANDONED:
        assert state.reason is not None
    else:
        assert state.reason is None
        assert isinstance(step, waiting_at[state.status]), (state.status, step.kind)
    if state.status is Status.ACTIVE and isinstance(step, AskStep):
        assert state.tries < step.max_tries
    if state.status is Status.ACTIVE and isinstance(step, ConfirmStep):
        assert state.tries == 0
    assert State.model_validate_json(state.model_dump_json()) == state  # storable as JSON


def exposed(effects: tuple[engine.Effect, ...]) -> str:
    """What the history, the ticket and the events other than completed show."""
    shown: list[str] = []
    for effect in effects:
        if isinstance(effect, (engine.Transition, engine.OpenTicket)):
            shown.append(effect.summary)
        elif isinstance(effect, engine.Emit) and effect.type != "conversation.completed":
            shown.append(effect.data.model_dump_json())
    return "\n".join(shown)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(flows(), st.lists(ACTIONS, max_size=25))
def test_any_inputs_keep_the_conversation_valid(flow: Flow, actions: list[Action]) -> None:
    """Whatever arrives, the state stays valid and ends each advance waiting or finished; a
    finished conversation never moves; advance is deterministic; sensitive answers never
    reach the history, the ticket or the events other than conversation.completed."""
    state, effects = engine.advance(flow, None, Start(version=1, facts=FACTS), AT)
    assert state is not None
    assert_valid(flow, state)
    now = AT
    shown = [exposed(effects)]
    secret: set[str] = set()
    public: set[str] = set()
    for serial, action in enumerate(actions):
        now += elapsed(action)
        event = concrete(action, state, flow, serial)
        step = flow.step(state.step)
        if isinstance(event, Text):
            sensitive = (
                isinstance(step, AskStep) and step.sensitive and state.status is Status.ACTIVE
            )
            (secret if sensitive else public).add(event.text)

        moved, effects = engine.advance(flow, state, event, now)

        assert (moved, effects) == engine.advance(flow, state, event, now)
        assert moved is not None
        if state.status in (Status.COMPLETED, Status.ABANDONED):
            assert (moved, effects) == (state, ())
        assert_valid(flow, moved)
        shown.append(exposed(effects))
        state = moved
    history = "\n".join(shown)
    assert [value for value in secret - public if value in history] == []


def test_the_generator_reaches_every_ending() -> None:
    """The generated flows and inputs reach completion and each abandonment reason (so the
    property above is not vacuous)."""
    seen: set[str] = set()

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,  # a fixed sample: what it reaches does not vary from run to run
        suppress_health_check=[HealthCheck.filter_too_much],
    )
    @given(flows(), st.lists(ACTIONS, max_size=25))
    def run(flow: Flow, actions: list[Action]) -> None:
        state, _ = engine.advance(flow, None, Start(version=1, facts=FACTS), AT)
        assert state is not None
        now = AT
        for serial, action in enumerate(actions):
            now += elapsed(action)
            step = flow.step(state.step)
            if isinstance(step, AskStep) and step.sensitive and state.status is Status.ACTIVE:
                seen.add("a sensitive answer")
            moved, _ = engine.advance(flow, state, concrete(action, state, flow, serial), now)
            assert moved is not None
            state = moved
        seen.add(state.reason.value if state.reason else state.status.value)

    run()

    assert {"completed", "timeout", "cancel", "failed", "a sensitive answer"} <= seen, seen
