"""Running the demo's steps in turn: each says what happened; the first that fails ends the run.

A step fails by raising StepFailed with what it found (or waited for in vain); anything
else it raises is reported the same way, with its traceback, so the run still names it.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO, TypeVar

from tgrelay import errors

T = TypeVar("T")

# Each step's lines are indented under its numbered title.
INDENT = "    "


class StepFailed(errors.TgrelayError):
    """A step of the demo did not hold."""


class Report:
    """Where a step says what happened, and which command does the same by hand."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def said(self, text: str) -> None:
        self._line(text)

    def command(self, line: str) -> None:
        """A shell line a reader can paste: `$ curl …`."""
        self._line(f"$ {line}")

    def _line(self, text: str) -> None:
        # print, not rich: commands stay on one line whatever the terminal's width.
        print(INDENT + text, file=self._out, flush=True)


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str  # what the step shows, in a few words
    run: Callable[[Report], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    held: int  # how many steps held, from the first
    failed: str | None  # the step that failed; None when every step held
    reason: str | None  # why it failed

    @property
    def exit_code(self) -> int:
        return 0 if self.failed is None else 1


async def run(
    steps: Sequence[Step], out: TextIO, *, clock: Callable[[], float] = time.monotonic
) -> Outcome:
    """Run `steps` in order until one fails, printing each step's title, lines and result."""
    report = Report(out)
    for number, step in enumerate(steps, start=1):
        print(f"[{number}/{len(steps)}] {step.name}", file=out, flush=True)
        started = clock()
        try:
            await step.run(report)
        except StepFailed as exc:
            reason = exc.message
        except Exception as exc:
            traceback.print_exc(file=out)
            reason = f"{type(exc).__name__}: {exc}"
        else:
            report.said(f"ok ({clock() - started:.1f} s)")
            continue
        report.said(f"FAILED: {reason}")
        return Outcome(held=number - 1, failed=step.name, reason=reason)
    return Outcome(held=len(steps), failed=None, reason=None)


async def until(
    check: Callable[[], Awaitable[T | None]], what: str, *, timeout: float, every: float = 0.05
) -> T:
    """The first result of `check` that is not None, polled every `every` seconds.

    After `timeout` seconds without one, StepFailed names `what` was waited for.
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                found = await check()
                if found is not None:
                    return found
                await asyncio.sleep(every)
    except TimeoutError:
        raise StepFailed(f"waited {timeout:g} s for {what}") from None
