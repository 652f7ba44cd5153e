"""The updates worker on PostgreSQL: batches of different chats run side by side."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.databases import PostgresServer
from tests.e2e.harness import eventually
from tests.inbox.updates import NOW, incoming
from tgrelay import app
from tgrelay.bots.models import BotStatus
from tgrelay.crypto import TokenCipher
from tgrelay.db import tables
from tgrelay.inbox.models import IncomingUpdate
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings

pytestmark = pytest.mark.postgres

BOT_ID = 1
STUCK_CHAT, OTHER_CHAT = 100, 200


def _message(update_id: int, chat_id: int) -> IncomingUpdate:
    """A private text message from the chat's user, as the intake accepts it."""
    person = {"id": chat_id, "first_name": "Ann"}
    payload = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(NOW.timestamp()),
            "chat": {**person, "type": "private"},
            "from": {**person, "is_bot": False},
            "text": "hello",
        },
    }
    return incoming(update_id, chat_id, BOT_ID, payload=json.dumps(payload))


@pytest.fixture
async def runtime(tmp_path: Path, postgres: PostgresServer) -> AsyncIterator[Runtime]:
    keys = (SecretStr(Fernet.generate_key().decode()),)
    async with postgres.fresh_database() as url:
        settings = Settings(
            data_dir=tmp_path,
            database_url=url,
            secret_keys=keys,
            telegram_api_url="http://127.0.0.1:9",  # nothing here calls Telegram
        )
        async with open_runtime(settings) as rt:
            yield rt


async def _held_bot(conn: AsyncConnection, cipher: TokenCipher) -> None:
    """A workspace holding the bot since before NOW, so its updates reach the handlers."""
    since = NOW - timedelta(days=1)
    await conn.execute(tables.workspaces.insert().values(id="ws_1", name="w", created_at=since))
    await conn.execute(
        tables.bots.insert().values(
            id=BOT_ID,
            workspace_id="ws_1",
            username="a_bot",
            first_name="A",
            token_ciphertext=cipher.encrypt("1:abcd"),
            token_fingerprint="1:…abcd",
            mode="webhook",
            status=BotStatus.DISCONNECTED.value,  # no health checks
            connected_since=since,
            created_at=since,
            updated_at=since,
        )
    )


async def _job_states(rt: Runtime) -> dict[int, str]:
    """The state of each update's process_update job, by update_id."""
    u, j = tables.updates, tables.jobs
    async with rt.db.engine.connect() as conn:
        rows = await conn.execute(
            select(u.c.update_id, j.c.state).select_from(u.join(j, j.c.subject_id == u.c.id))
        )
        return {int(row.update_id): str(row.state) for row in rows}


async def test_a_chat_whose_batch_waits_holds_up_no_other_chat(runtime: Runtime) -> None:
    """While one chat's batch waits for a row another transaction holds, an update of
    another chat that arrives meanwhile is processed in a batch of its own; the first
    finishes once the row is let go."""
    async with runtime.db.transaction() as conn:
        await _held_bot(conn, runtime.cipher)
        await conn.execute(
            tables.telegram_chats.insert().values(
                bot_id=BOT_ID, chat_id=STUCK_CHAT, type="private", updated_at=NOW
            )
        )
    async with app.background(runtime, run_worker=True, run_pollers=False) as running:
        async with runtime.db.transaction() as holder:
            await holder.execute(
                text("SELECT 1 FROM telegram_chats WHERE chat_id = :chat FOR UPDATE"),
                {"chat": STUCK_CHAT},
            )
            assert await running.writer.store(_message(1, STUCK_CHAT)) is True

            async def waiting_for_the_row() -> bool:
                async with runtime.db.engine.connect() as conn:
                    waiting = await conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted"
                            " AND pid <> pg_backend_pid()"
                        )
                    )
                return bool(waiting)

            await eventually(waiting_for_the_row)
            assert await running.writer.store(_message(2, OTHER_CHAT)) is True

            async def other_done() -> bool:
                return (await _job_states(runtime)).get(2) == "done"

            await eventually(other_done)
            assert (await _job_states(runtime))[1] == "running"

        async def both_done() -> bool:
            return await _job_states(runtime) == {1: "done", 2: "done"}

        await eventually(both_done)


async def test_the_updates_worker_runs_one_batch_while_the_intake_bursts(runtime: Runtime) -> None:
    """serve's wiring: four batches at once on PostgreSQL, one after a transaction that
    found the intake bursting (IntakeShare), four again after one that found it quiet."""
    async with runtime.db.transaction() as conn:
        await _held_bot(conn, runtime.cipher)
    async with app.background(runtime, run_worker=True, run_pollers=False) as running:
        worker = running.updates_worker
        assert worker is not None
        assert worker.allowed_now() == app.UPDATES_CONCURRENCY_POSTGRES

        async def processed(update_id: int) -> bool:
            return (await _job_states(runtime)).get(update_id) == "done"

        # Arrivals far above BURST_RATE since the worker's last look, as the share counts
        # them; the update's transaction is followed by the share's look.
        running.writer.arrived += 1_000_000
        assert await running.writer.store(_message(1, STUCK_CHAT)) is True
        await eventually(lambda: processed(1))
        await eventually(_true_when(lambda: worker.allowed_now() == 1))

        assert await running.writer.store(_message(2, OTHER_CHAT)) is True
        await eventually(lambda: processed(2))
        await eventually(
            _true_when(lambda: worker.allowed_now() == app.UPDATES_CONCURRENCY_POSTGRES)
        )


def _true_when(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked
