"""Fault test: SIGKILL the server repeatedly under webhook load; nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tgrelay.db import tables
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import eventually, free_port

UPDATES = 1500
CONCURRENCY = 20
KILLS = 3


class Server:
    """`tgrelay serve` as a child process that the test can kill and start again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, base_url: str) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tgrelay", "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        async def healthy() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{base_url}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(healthy, timeout=120, interval=0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no shutdown code runs
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def _update(update_id: int) -> bytes:
    chat = 7000 + update_id % 17  # many chats, so per-chat ordering is exercised
    return json.dumps(
        {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "date": 1763700000,
                "chat": {"id": chat, "type": "private", "first_name": "Load"},
                "from": {"id": chat, "is_bot": False, "first_name": "Load"},
                "text": f"message {update_id}",
            },
        }
    ).encode()


@pytest.mark.slow
async def test_sigkill_under_load_loses_nothing_acknowledged(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Every update that got a 2xx before or between SIGKILLs is stored and processed exactly once."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(tmp_path),
        "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TGRELAY_TELEGRAM_API_URL": emulator.base_url,
        "TGRELAY_PUBLIC_URL": base_url,
        "TGRELAY_PORT": str(port),
        "TGRELAY_JOB_LEASE_SECONDS": "2",
        "TGRELAY_LOG_LEVEL": "WARNING",
    }
    created = subprocess.run(
        [sys.executable, "-m", "tgrelay", "workspace", "create", "faults", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = json.loads(created.stdout)["api_key"]
    server = Server(env, tmp_path / "server.log")
    await server.start(base_url)
    try:
        bot = emulator.emulator.create_bot("fault_bot")
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
            response = await api.post(
                "/v1/bots",
                json={"token": bot.token},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            assert response.status_code == 201, response.text
        webhook = emulator.emulator.webhook_of(bot.id)
        assert webhook is not None
        secret = webhook.secret_token
        assert secret is not None
        # Only this test's sender plays Telegram: the emulator must not push on its own.
        emulator.emulator.delete_webhook(bot.id)

        acknowledged: set[int] = set()
        queue: asyncio.Queue[int] = asyncio.Queue()
        for update_id in range(1, UPDATES + 1):
            queue.put_nowait(update_id)
        rng = random.Random(7)

        async def sender(client: httpx.AsyncClient) -> None:
            # Like Telegram: retry an update until it is acknowledged with a 2xx.
            while True:
                try:
                    update_id = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                while True:
                    try:
                        answer = await client.post(
                            f"/telegram/{bot.id}",
                            content=_update(update_id),
                            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
                        )
                        if answer.status_code == 200:
                            acknowledged.add(update_id)
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)

        async def killer() -> None:
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.5, 1.5))
                server.kill()
                await asyncio.sleep(0.2)
                await server.start(base_url)

        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            await asyncio.gather(killer(), *(sender(client) for _ in range(CONCURRENCY)))
        assert acknowledged == set(range(1, UPDATES + 1))

        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'tgrelay.db'}")

        async def all_processed() -> bool:
            async with engine.connect() as conn:
                unfinished = await conn.scalar(
                    select(func.count())
                    .select_from(tables.jobs)
                    .where(tables.jobs.c.state != "done")
                )
            return unfinished == 0

        try:
            await eventually(all_processed, timeout=120, interval=0.2)
            async with engine.connect() as conn:
                stored = sorted(await conn.scalars(select(tables.updates.c.update_id)))
                jobs = (
                    await conn.execute(
                        select(tables.jobs.c.subject_id, tables.jobs.c.state).where(
                            tables.jobs.c.kind == "process_update"
                        )
                    )
                ).all()
                users = await conn.scalar(select(func.count()).select_from(tables.telegram_users))
                pairs = await conn.execute(
                    select(tables.updates.c.update_id, tables.jobs.c.id).join(
                        tables.jobs, tables.jobs.c.subject_id == tables.updates.c.id
                    )
                )
                job_of_update: dict[int, int] = dict(pairs.all())
                # Events are written in their update's job transaction: the announced
                # update_ids, in the order they were written.
                bodies = await conn.scalars(
                    select(tables.events.c.body)
                    .where(tables.events.c.type == "message.received")
                    .order_by(text("events.rowid"))
                )
                announced = [json.loads(body)["data"]["update_id"] for body in bodies]
        finally:
            await engine.dispose()
        assert stored == list(range(1, UPDATES + 1))  # each once: (bot_id, update_id) is unique
        assert len(jobs) == UPDATES
        assert {state for _, state in jobs} == {"done"}
        assert len({subject for subject, _ in jobs}) == UPDATES  # one job per update
        assert users == 17
        # Batches cut by SIGKILL were undone whole and run again: each update announced once,
        # and each chat's updates in the order of their jobs (the intake's, per chat).
        assert sorted(announced) == list(range(1, UPDATES + 1))
        for chat in range(17):
            job_order = [job_of_update[u] for u in announced if u % 17 == chat]
            assert job_order == sorted(job_order), chat
    finally:
        server.stop()
