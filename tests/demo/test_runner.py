"""The demo's step runner: steps run in order, the first failure ends the run and is named."""

from __future__ import annotations

import io

import pytest

from tgrelay.demo import runner
from tgrelay.demo.runner import Outcome, Report, Step, StepFailed


def _fixed_clock() -> float:
    return 0.0


async def _nothing_yet() -> int | None:
    return None


async def test_every_step_holding_runs_them_all_in_order() -> None:
    """Steps that hold run in order, each under its numbered title, and the outcome says so."""
    ran: list[str] = []

    async def first(report: Report) -> None:
        ran.append("first")
        report.said("the first thing happened")

    async def second(report: Report) -> None:
        ran.append("second")
        report.command("curl -s http://127.0.0.1:1/healthz")

    out = io.StringIO()
    outcome = await runner.run(
        [Step(name="one", run=first), Step(name="two", run=second)], out, clock=_fixed_clock
    )

    assert outcome == Outcome(held=2, failed=None, reason=None)
    assert outcome.exit_code == 0
    assert ran == ["first", "second"]
    assert out.getvalue().splitlines() == [
        "[1/2] one",
        "    the first thing happened",
        "    ok (0.0 s)",
        "[2/2] two",
        "    $ curl -s http://127.0.0.1:1/healthz",
        "    ok (0.0 s)",
    ]


async def test_a_step_that_times_out_ends_the_run_naming_it_and_what_it_waited_for() -> None:
    """A step whose condition never holds fails at its deadline; later steps do not run."""
    ran: list[str] = []

    async def holds(report: Report) -> None:
        ran.append("holds")

    async def waits(report: Report) -> None:
        ran.append("waits")
        await runner.until(_nothing_yet, "the alert to be sent", timeout=0.05, every=0.01)

    async def after(report: Report) -> None:
        ran.append("after")

    out = io.StringIO()
    steps = [
        Step(name="connect a bot", run=holds),
        Step(name="send an alert", run=waits),
        Step(name="verify a delivery", run=after),
    ]
    outcome = await runner.run(steps, out, clock=_fixed_clock)

    assert outcome == Outcome(
        held=1, failed="send an alert", reason="waited 0.05 s for the alert to be sent"
    )
    assert outcome.exit_code == 1
    assert ran == ["holds", "waits"]
    assert out.getvalue().splitlines() == [
        "[1/3] connect a bot",
        "    ok (0.0 s)",
        "[2/3] send an alert",
        "    FAILED: waited 0.05 s for the alert to be sent",
    ]


async def test_an_unexpected_error_still_names_its_step() -> None:
    """An exception that is not StepFailed fails its step too, with its type, message and traceback."""

    async def breaks(report: Report) -> None:
        raise KeyError("bot_id")

    out = io.StringIO()
    outcome = await runner.run([Step(name="read the answer", run=breaks)], out)

    assert outcome == Outcome(held=0, failed="read the answer", reason="KeyError: 'bot_id'")
    lines = out.getvalue().splitlines()
    assert (lines[0], lines[1], lines[-2], lines[-1]) == (
        "[1/1] read the answer",
        "Traceback (most recent call last):",
        "KeyError: 'bot_id'",
        "    FAILED: KeyError: 'bot_id'",
    )


async def test_until_returns_the_first_value_the_check_finds() -> None:
    """`until` polls until the check returns something other than None, and returns it."""
    answers = iter([None, None, "processed"])

    async def check() -> str | None:
        return next(answers)

    found = await runner.until(check, "the update", timeout=5, every=0.001)

    assert (found, list(answers)) == ("processed", [])


async def test_a_step_failure_raised_inside_a_check_ends_the_wait_at_once() -> None:
    """A check that finds the outcome cannot come (e.g. a dead update) fails without waiting out the deadline."""

    async def check() -> int | None:
        raise StepFailed("update 7 is dead: boom")

    with pytest.raises(StepFailed) as raised:
        await runner.until(check, "update 7", timeout=3600)

    assert raised.value.message == "update 7 is dead: boom"
