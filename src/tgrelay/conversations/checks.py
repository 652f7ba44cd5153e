"""A flow document's validation: the schema's errors and the checks a schema cannot say,
each pointing at the step and field it concerns (`steps[2] (id "zip").input.pattern: …`).

Beyond the schema: step ids are unique; every step a step names exists; the last say, ask
or call step names its `next`; regexes compile; templates parse and name only known
variables; min ≤ max; choices exist and differ; a call sends known variables; no loop of
steps that never wait (say, branch); an end or handoff is reachable from the first step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from tgrelay import errors, templates
from tgrelay.conversations import inputs
from tgrelay.conversations.flow import (
    ApiTrigger,
    AskStep,
    BranchStep,
    CallStep,
    ChoiceInput,
    ConfirmStep,
    DateInput,
    EndStep,
    Flow,
    HandoffStep,
    NumberInput,
    SayStep,
    Step,
    TextInput,
    next_of,
)

# What Telegram tells about who and where, usable in every flow's templates and conditions.
BUILTINS: dict[str, tuple[str, ...] | None] = {
    "user": ("id", "first_name", "last_name", "username", "language_code"),
    "chat": ("id",),
}
# The tags of the tagged unions under a field, which pydantic adds to an error's location.
_STEP_KINDS = frozenset(("ask", "call", "say", "branch", "confirm", "handoff", "end"))
_TAGS = {
    "input": frozenset(
        ("text", "number", "email", "phone", "date", "choice", "photo", "location", "contact")
    ),
    "trigger": frozenset(("command", "deep_link", "callback", "api")),
}


class FlowInvalid(errors.InvalidInput):
    """The flow document is not valid."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("the flow is not valid: " + "; ".join(self.problems))


def parse(document: str | bytes | Mapping[str, Any]) -> Flow:
    """The flow in `document` (JSON text or its decoded object); FlowInvalid listing every
    problem otherwise."""
    if isinstance(document, (str, bytes)):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise FlowInvalid([f"not JSON: {exc}"]) from None
    if not isinstance(document, Mapping):
        raise FlowInvalid(["the document must be a JSON object"])
    try:
        flow = Flow.model_validate(document)
    except ValidationError as exc:
        raise FlowInvalid([_schema_problem(error, document) for error in exc.errors()]) from None
    problems = check(flow)
    if problems:
        raise FlowInvalid(problems)
    return flow


def _schema_problem(error: Any, document: Mapping[str, Any]) -> str:
    location: list[Any] = list(error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        location.append(str(error["ctx"]["discriminator"]).strip("'"))
    steps = document.get("steps")
    path = ""
    for index, part in enumerate(location):
        if index and location[index - 1] in _TAGS and part in _TAGS[location[index - 1]]:
            continue  # the tag pydantic names a union's member by: the document has none there
        if index == 2 and location[0] == "steps" and part in _STEP_KINDS:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
            if index == 1 and location[0] == "steps" and isinstance(steps, list):
                path += _id_note(steps, part)
        else:
            path += f".{part}" if path else str(part)
    return f"{path or 'document'}: {error['msg']}"


def _id_note(steps: list[Any], index: int) -> str:
    if 0 <= index < len(steps) and isinstance(steps[index], Mapping):
        step_id = steps[index].get("id")
        if isinstance(step_id, str):
            return f' (id "{step_id}")'
    return ""


def variables(flow: Flow) -> dict[str, tuple[str, ...] | None]:
    """The names a flow's templates and conditions may use: the variables its ask and call
    steps set, those an API start gives, and the built-in `user.*` and `chat.id`."""
    names: dict[str, tuple[str, ...] | None] = dict(BUILTINS)
    if isinstance(flow.trigger, ApiTrigger):
        for name in flow.trigger.variables:
            names.setdefault(name, None)
    for step in flow.steps:
        if isinstance(step, AskStep):
            names.setdefault(step.variable, None)
        elif isinstance(step, CallStep):
            for name in step.sets:
                names.setdefault(name, None)
    return names


def check(flow: Flow) -> list[str]:
    """Every problem the schema cannot catch, in the order of the steps."""
    known = variables(flow)
    ids = [step.id for step in flow.steps]
    problems: list[str] = []
    for index, step in enumerate(flow.steps):
        where = f'steps[{index}] (id "{step.id}")'
        problems.extend(
            f"{where}.{field}: {problem}"
            for field, problem in _step_problems(flow, index, step, ids, known)
        )
    problems.extend(_loops(flow))
    if not _terminal_reachable(flow, ids):
        problems.append("steps: no end or handoff step can be reached from the first step")
    return problems


def _step_problems(
    flow: Flow, index: int, step: Step, ids: list[str], known: Mapping[str, tuple[str, ...] | None]
) -> Iterator[tuple[str, str]]:
    if step.id in ids[:index]:
        yield "id", f"duplicate of steps[{ids.index(step.id)}]"
    for field, target in _references(step):
        if target not in ids:
            yield field, f'no step has the id "{target}"'
    if isinstance(step, (SayStep, AskStep, CallStep)) and next_of(flow, step) is None:
        yield "next", "the last step must name its next step (or be an end or handoff)"
    for field, text in _templates(step):
        try:
            templates.validate(text, known)
        except templates.TemplateInvalid as exc:
            yield field, exc.message
    if isinstance(step, AskStep):
        if step.variable in BUILTINS:
            yield "variable", f'"{step.variable}" is reserved for Telegram\'s facts'
        yield from _input_problems(step)
    if isinstance(step, CallStep):
        for position, name in enumerate(step.send or ()):
            if name not in known or name in BUILTINS:
                yield f"send[{position}]", f'no step sets the variable "{name}"'
        for position, name in enumerate(step.sets):
            if name in BUILTINS:
                yield f"sets[{position}]", f'"{name}" is reserved for Telegram\'s facts'
    if isinstance(step, BranchStep):
        for position, condition in enumerate(step.conditions):
            if not _known_name(condition.variable, known):
                yield f"conditions[{position}].variable", f'unknown variable "{condition.variable}"'
            problem = _condition_value_problem(condition.op, condition.value)
            if problem is not None:
                yield f"conditions[{position}].value", problem


def _references(step: Step) -> Iterator[tuple[str, str]]:
    if isinstance(step, (SayStep, AskStep, CallStep)) and step.next is not None:
        yield "next", step.next
    if isinstance(step, AskStep) and step.on_exhausted is not None:
        yield "on_exhausted", step.on_exhausted
    if isinstance(step, CallStep) and step.on_failure is not None:
        yield "on_failure", step.on_failure
    if isinstance(step, BranchStep):
        for position, condition in enumerate(step.conditions):
            yield f"conditions[{position}].next", condition.next
        yield "default", step.default
    if isinstance(step, ConfirmStep):
        yield "yes", step.yes
        yield "no", step.no


def _templates(step: Step) -> Iterator[tuple[str, str]]:
    if isinstance(step, (AskStep, SayStep, ConfirmStep)):
        yield "message", step.message
    if isinstance(step, (HandoffStep, EndStep)) and step.message is not None:
        yield "message", step.message
    if isinstance(step, AskStep) and step.retry_message is not None:
        yield "retry_message", step.retry_message
    if isinstance(step, CallStep) and step.fallback_text is not None:
        yield "fallback_text", step.fallback_text


def _input_problems(step: AskStep) -> Iterator[tuple[str, str]]:
    expected = step.input
    if isinstance(expected, TextInput):
        if expected.pattern is not None:
            try:
                re.compile(expected.pattern)
            except re.error as exc:
                yield "input.pattern", f"not a valid regex: {exc}"
        if (
            expected.min_length is not None
            and expected.max_length is not None
            and expected.min_length > expected.max_length
        ):
            yield (
                "input.min_length",
                f"{expected.min_length} is greater than max_length {expected.max_length}",
            )
    bounds = _bounds(expected)
    if bounds is not None:
        yield "input.min", f"{bounds[0]} is greater than max {bounds[1]}"
    if isinstance(expected, ChoiceInput):
        if not expected.choices:
            yield "input.choices", "at least one choice is needed"
        keys = [choice.key for choice in expected.choices]
        for position, key in enumerate(keys):
            if key in keys[:position]:
                yield f"input.choices[{position}]", f'the value "{key}" is already a choice'
            elif len(inputs.button_data(step.id, key).encode()) > inputs.MAX_BUTTON_DATA_BYTES:
                yield (
                    f"input.choices[{position}]",
                    "the step id and the value make callback data longer than "
                    f"{inputs.MAX_BUTTON_DATA_BYTES} bytes",
                )


def _bounds(expected: object) -> tuple[object, object] | None:
    """A number or date input's min and max when min is greater (none when they are fine)."""
    if isinstance(expected, NumberInput):
        low, high = expected.min, expected.max
        if low is not None and high is not None and low > high:
            return f"{low:g}", f"{high:g}"
    if isinstance(expected, DateInput):
        first, last = expected.min, expected.max
        if first is not None and last is not None and first > last:
            return first, last
    return None


def _known_name(name: str, known: Mapping[str, tuple[str, ...] | None]) -> bool:
    variable, _, attribute = name.partition(".")
    if variable not in known:
        return False
    attributes = known[variable]
    if attributes is None:
        return attribute == ""
    return attribute in attributes


def _condition_value_problem(op: str, value: Any) -> str | None:
    if op in ("in", "not_in") and not isinstance(value, list):
        return f"{op} compares with a list of values"
    if op in ("lt", "le", "gt", "ge") and (
        not isinstance(value, (int, float, str)) or isinstance(value, bool)
    ):
        return f"{op} compares with a number or a string"
    if op == "matches":
        if not isinstance(value, str):
            return "matches takes a regex"
        try:
            re.compile(value)
        except re.error as exc:
            return f"not a valid regex: {exc}"
    return None


def successors(flow: Flow, step: Step) -> list[str]:
    """The ids a step may go to (a call's answer may also pick any step: not listed)."""
    targets = [target for _, target in _references(step)]
    if isinstance(step, (SayStep, AskStep, CallStep)) and step.next is None:
        following = flow.following(step.id)
        if following is not None:
            targets.append(following)
    return targets


def _loops(flow: Flow) -> list[str]:
    """A problem per loop of say/branch steps, which would run forever without waiting."""
    steps = {step.id: step for step in flow.steps}
    index = {step.id: position for position, step in enumerate(flow.steps)}
    problems: list[str] = []
    reported: set[frozenset[str]] = set()
    for start in flow.steps:
        if not isinstance(start, (SayStep, BranchStep)):
            continue
        path = _cycle_from(flow, start.id, steps)
        if path is not None and frozenset(path) not in reported:
            reported.add(frozenset(path))
            where = f'steps[{index[start.id]}] (id "{start.id}")'
            problems.append(
                f"{where}: a loop of steps that never wait: {' → '.join([*path, path[0]])}"
            )
    return problems


def _cycle_from(flow: Flow, start: str, steps: Mapping[str, Step]) -> list[str] | None:
    """A path of say/branch steps from `start` back to it, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        current, path = stack.pop()
        for target in successors(flow, steps[current]):
            if target == start:
                return path
            step = steps.get(target)
            if step is None or target in seen or not isinstance(step, (SayStep, BranchStep)):
                continue
            seen.add(target)
            stack.append((target, [*path, target]))
    return None


def _terminal_reachable(flow: Flow, ids: list[str]) -> bool:
    steps = {step.id: step for step in flow.steps}
    seen = {flow.steps[0].id}
    frontier = [flow.steps[0].id]
    while frontier:
        step = steps[frontier.pop()]
        if isinstance(step, (EndStep, HandoffStep)):
            return True
        for target in successors(flow, step):
            if target in steps and target not in seen:
                seen.add(target)
                frontier.append(target)
    return False
