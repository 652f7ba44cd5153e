"""Two processes' pollers on one database: one holds the bot's lease, updates arrive once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import func, select

from tests.e2e.harness import eventually
from tgrelay.bots import service as bots
from tgrelay.db import tables
from tgrelay.inbox.poller import PollerSupervisor
from tgrelay.inbox.writer import GroupCommitWriter
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.emulator_server import running_emulator
from tgrelay.workspaces import service as workspaces

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann"}


async def test_one_poller_per_bot_across_supervisors(tmp_path: Path) -> None:
    """With two supervisors sharing a database, one polls the bot and each update is stored once."""
    async with running_emulator() as emulator:
        settings = Settings(
            data_dir=tmp_path,
            telegram_api_url=emulator.base_url,
            secret_keys=(SecretStr(Fernet.generate_key().decode()),),
            poll_timeout_seconds=1,
        )
        async with open_runtime(settings) as first, open_runtime(settings) as second:
            workspace, _ = await workspaces.create_workspace(first.db, "polls", now=first.clock())
            principal = await workspaces.operator(first.db, workspace.id)
            bot = emulator.emulator.create_bot("polled_bot")
            await bots.connect(first, principal, bot.token)

            writers = [GroupCommitWriter(first), GroupCommitWriter(second)]
            supervisors = [
                PollerSupervisor(first, writers[0]),
                PollerSupervisor(second, writers[1]),
            ]
            tasks = [asyncio.create_task(w.run()) for w in writers]
            tasks += [asyncio.create_task(s.run()) for s in supervisors]
            try:
                sent = [
                    emulator.emulator.send_message(bot.id, ANN, None, f"m{i}")["update_id"]
                    for i in range(20)
                ]

                async def all_stored() -> bool:
                    async with first.db.engine.connect() as conn:
                        count = await conn.scalar(select(func.count()).select_from(tables.updates))
                    return count == len(sent)

                await eventually(all_stored)
                async with first.db.engine.connect() as conn:
                    stored = list(
                        await conn.scalars(
                            select(tables.updates.c.update_id).order_by(tables.updates.c.update_id)
                        )
                    )
                    holders = list(await conn.scalars(select(tables.leases.c.holder)))
            finally:
                for supervisor in supervisors:
                    await supervisor.stop()
                for writer in writers:
                    await writer.stop()
                await asyncio.gather(*tasks, return_exceptions=True)
    assert stored == sent
    assert len(holders) == 1
