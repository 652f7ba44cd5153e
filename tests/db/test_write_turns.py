"""The order in which a process's write transactions get SQLite's one write lock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tgrelay.db import write_turns
from tgrelay.db.write_turns import WriteTurns


def logged_writer(
    turns: WriteTurns,
) -> tuple[list[str], Callable[[str], Coroutine[Any, Any, None]]]:
    """Who held the turn, in order, and a writer that takes it and logs its name."""
    order: list[str] = []

    async def writer(name: str) -> None:
        async with turns.turn():
            order.append(name)

    return order, writer


async def take_turns(turns: WriteTurns, arrivals: list[tuple[str, bool]]) -> list[str]:
    """Hold the turn, let each (name, ahead) queue in that order, release: who held it when."""
    order: list[str] = []

    async def writer(name: str, first: bool) -> None:
        with write_turns.ahead() if first else contextlib.nullcontext():
            async with turns.turn():
                order.append(name)
                await asyncio.sleep(0)

    async with turns.turn():
        tasks = []
        for name, first in arrivals:
            tasks.append(asyncio.create_task(writer(name, first)))
            await asyncio.sleep(0)  # queued in this order
    await asyncio.gather(*tasks)
    return order


async def test_writers_ahead_are_served_first_in_arrival_order() -> None:
    """Waiting writers from `ahead()` blocks get the turn before the others; each kind keeps its arrival order."""
    order = await take_turns(
        WriteTurns(), [("api-1", False), ("job-1", True), ("api-2", False), ("job-2", True)]
    )
    assert order == ["job-1", "job-2", "api-1", "api-2"]


async def test_others_get_a_turn_after_a_streak_ahead() -> None:
    """While others wait, writers ahead get at most max_ahead_streak turns in a row, then one of the others goes."""
    arrivals = [("api-1", False), ("api-2", False)] + [(f"job-{n}", True) for n in range(1, 6)]
    order = await take_turns(WriteTurns(max_ahead_streak=2), arrivals)
    assert order == ["job-1", "job-2", "api-1", "job-3", "job-4", "api-2", "job-5"]


async def test_a_free_turn_is_taken_at_once_and_released_after_the_block() -> None:
    """Nobody waiting: the turn is taken without queueing; after the block the next writer takes it as freely."""
    turns = WriteTurns()
    async with turns.turn():
        pass
    async with asyncio.timeout(1):
        async with turns.turn():
            pass


async def test_a_writer_cancelled_while_waiting_leaves_the_queue() -> None:
    """A waiting writer that is cancelled never holds the turn; the one behind it still gets it."""
    turns = WriteTurns()
    order, writer = logged_writer(turns)

    async with turns.turn():
        cancelled = asyncio.create_task(writer("cancelled"))
        await asyncio.sleep(0)
        behind = asyncio.create_task(writer("behind"))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.sleep(0)
    await asyncio.gather(behind)
    assert cancelled.cancelled()
    assert order == ["behind"]


async def test_a_writer_cancelled_as_it_is_given_the_turn_passes_it_on() -> None:
    """A writer cancelled right after a release handed it the turn gives it to the next in line instead of keeping it."""
    turns = WriteTurns()
    order, writer = logged_writer(turns)

    holder = turns.turn()
    await holder.__aenter__()
    handed = asyncio.create_task(writer("handed"))
    await asyncio.sleep(0)
    behind = asyncio.create_task(writer("behind"))
    await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)  # the turn goes to `handed`, not yet running
    handed.cancel()
    async with asyncio.timeout(1):
        await asyncio.gather(handed, behind, return_exceptions=True)
    assert handed.cancelled()
    assert order == ["behind"]


def test_a_streak_below_one_is_refused() -> None:
    """max_ahead_streak must let a writer ahead go at least once."""
    with pytest.raises(ValueError, match="at least 1"):
        WriteTurns(max_ahead_streak=0)


async def test_ahead_reaches_tasks_started_inside_and_ends_with_the_block() -> None:
    """Tasks started in an `ahead()` block queue ahead too; code after the block does not."""
    turns = WriteTurns()
    order, writer = logged_writer(turns)

    async with turns.turn():
        after = asyncio.create_task(writer("after the block"))
        await asyncio.sleep(0)
        with write_turns.ahead():
            inside = asyncio.create_task(writer("started inside"))
        await asyncio.sleep(0)
    await asyncio.gather(after, inside)
    assert order == ["started inside", "after the block"]
