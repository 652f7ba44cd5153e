"""End to end: a serving hub prunes a processed update, its job and its event once past their age."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tgrelay.db import tables
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
THREE_SECONDS_IN_DAYS = 3 / 86400


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=True,
        port=port,
        retain_updates_days=THREE_SECONDS_IN_DAYS,
        retain_jobs_days=THREE_SECONDS_IN_DAYS,
        retain_events_days=THREE_SECONDS_IN_DAYS,
        retain_audit_days=0,  # kept forever
        retention_interval_seconds=0.2,
    )
    async with running_tgrelay(settings, port) as relay:
        yield relay


async def test_processed_update_is_pruned_with_its_job_and_event(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """After its age, a processed update, its done jobs and its event are gone; audit rows stay."""
    bot = emulator.emulator.create_bot("relay_bot")
    await relay.connect_bot(bot.token)
    emulator.emulator.send_message(bot.id, ANN, None, "hello")

    async def processed() -> bool:
        return [u["status"] for u in await relay.updates(bot.id)] == ["processed"]

    await eventually(processed)

    async def rows() -> dict[str, int]:
        async with relay.runtime.db.engine.connect() as conn:
            return {
                table.name: len((await conn.execute(select(table.c.id))).all())
                for table in (tables.updates, tables.jobs, tables.events, tables.audit_log)
            }

    audit_before = (await rows())["audit_log"]
    assert audit_before > 0  # connecting the bot was audited

    async def pruned() -> bool:
        found = await rows()
        return found["updates"] == 0 and found["events"] == 0 and found["jobs"] == 0

    await eventually(pruned)
    assert (await relay.updates(bot.id), await rows()) == (
        [],
        {"updates": 0, "jobs": 0, "events": 0, "audit_log": audit_before},
    )
