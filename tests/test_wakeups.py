"""A process that runs workers on PostgreSQL listens for the jobs other processes write."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tests.databases import PostgresServer
from tgrelay import app
from tgrelay.queue import pacing
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings

WAIT_LIMIT = 30.0

# Another OS process: a job due now, written the way an API process writes one.
ENQUEUE = """
import asyncio, sys
from tgrelay.clock import utcnow
from tgrelay.db.engine import Database
from tgrelay.queue import store
from tgrelay.queue.models import NewJob

async def main() -> None:
    db = Database(sys.argv[1])
    async with db.transaction() as conn:
        job = NewJob(kind="nothing", payload={}, queue="elsewhere")
        await store.enqueue(conn, [job], now=utcnow(), default_max_attempts=1)
    await db.dispose()

asyncio.run(main())
"""


@pytest.mark.postgres
async def test_a_worker_process_hears_the_jobs_another_process_writes(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Once its listener connects, a worker process's workers look only once a second when
    busy, and a job written by another process reaches `rt.notify_queue`; stopping puts the
    usual pacing back."""
    keys = (SecretStr(Fernet.generate_key().decode()),)
    async with postgres.fresh_database() as url:
        settings = Settings(data_dir=tmp_path, database_url=url, secret_keys=keys)
        async with open_runtime(settings) as rt:
            async with app.background(rt, run_worker=True, run_pollers=False) as running:
                workers = [running.worker, running.updates_worker, running.webhook_worker]
                assert all(worker is not None for worker in workers)
                usual = [worker.pacing for worker in workers if worker is not None]
                async with asyncio.timeout(WAIT_LIMIT):
                    while [w.pacing for w in workers if w is not None] != [
                        pacing.listening(each) for each in usual
                    ]:
                        await asyncio.sleep(0.01)
                woken: list[str] = []
                wake = rt.notify_queue

                def recording(queue: str) -> None:
                    woken.append(queue)
                    wake(queue)

                rt.notify_queue = recording
                enqueuer = await asyncio.create_subprocess_exec(sys.executable, "-c", ENQUEUE, url)
                assert await enqueuer.wait() == 0
                async with asyncio.timeout(WAIT_LIMIT):
                    while woken != ["elsewhere"]:
                        await asyncio.sleep(0.01)
            assert [w.pacing for w in workers if w is not None] == usual
