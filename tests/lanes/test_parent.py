"""serve's side of the webhooks lane: the pipe's frames both ways, and the child's routing of
wakes (its own queue to its worker, the others to serve)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.e2e.harness import eventually
from tgrelay.lanes import child, frames, parent
from tgrelay.settings import Settings


async def test_wakes_go_both_ways_over_the_pipes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parent, "CHILD_MODULE", "tests.lanes.stand_in_child")
    woken: list[str] = []

    async def expected() -> bool:
        return True

    lane = parent.LaneProcess(
        Settings(data_dir=tmp_path, secret_keys=(SecretStr("k" * 43 + "="),)),
        expected=expected,
        on_wake=woken.append,
        look_seconds=60,
    )
    running = asyncio.create_task(lane.run())
    try:

        async def told_once_ready() -> bool:
            return woken == ["default"]  # the child's enqueue woke serve's worker

        await eventually(told_once_ready, timeout=30)
        lane.notify()  # serve enqueued deliveries: the child hears of it

        async def heard() -> bool:
            return woken == ["default", "heard:webhooks"]

        await eventually(heard, timeout=30)
        assert await lane.samples() == []
    finally:
        await lane.stop()
        await running
    assert lane.pid is None


def test_the_childs_own_queue_wakes_its_worker_and_the_others_go_to_serve() -> None:
    lane_woken: list[bool] = []
    answered: list[bytes] = []
    notify = child.notifier(lambda: lane_woken.append(True), answered.append)
    notify("webhooks")
    notify("default")
    assert lane_woken == [True]
    assert answered == [frames.frame(frames.Wake("default"))]
