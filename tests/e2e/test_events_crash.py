"""Fault test: SIGKILL the worker in the middle of a webhook delivery; nothing is lost, and the
redelivery carries the same webhook-id."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import func, select

from tgrelay.db import tables
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.receiver import Delivery, receiving
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

from .harness import eventually

EVENTS = 20
KILL_AT = 5  # the request during which the worker dies


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tgrelay", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_killed_worker_redelivers_with_the_same_webhook_id(tmp_path: Path) -> None:
    """Every event arrives after a SIGKILL mid-request; the interrupted one again, same id."""
    key = Fernet.generate_key().decode()
    lease = 2.0
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(tmp_path),
        "TGRELAY_SECRET_KEYS": key,
        "TGRELAY_WEBHOOKS_ALLOW_PRIVATE": "true",
        "TGRELAY_JOB_LEASE_SECONDS": str(lease),
        "TGRELAY_TELEGRAM_API_URL": "http://127.0.0.1:9",  # no bots: never called
    }
    settings = Settings(
        data_dir=tmp_path, secret_keys=(SecretStr(key),), webhooks_allow_private=True
    )
    killed = asyncio.Event()

    async def hang_once(delivery: Delivery) -> int:
        interrupted = len(received) >= KILL_AT and received[KILL_AT - 1] is delivery
        if interrupted and not killed.is_set():
            await killed.wait()  # the worker dies while this request is in flight
        return 200

    async with receiving(hang_once) as receiver:
        received = receiver.receiver.deliveries
        async with open_runtime(settings) as rt:
            workspace, _ = await workspaces.create_workspace(rt.db, "crash", now=rt.clock())
            principal = Principal(workspace_id=workspace.id, actor="test")
            await events.create_endpoint(
                rt, principal, url=receiver.url, event_types=None, description=None
            )
            async with rt.db.transaction() as conn:
                for number in range(EVENTS):
                    await events.emit(
                        conn,
                        rt,
                        workspace_id=workspace.id,
                        event_type=EventType.ENDPOINT_DISABLED,
                        data=catalog.EndpointDisabledData(
                            endpoint_id=f"ep_{number}", url="https://example.com", reason="test"
                        ),
                    )

            first = _worker(env, tmp_path / "worker-1.log")
            try:
                await receiver.receiver.wait_for(KILL_AT, timeout=60)
                first.kill()  # SIGKILL: no shutdown code runs, the lease is left to expire
                first.wait()
            finally:
                killed.set()
                if first.poll() is None:
                    first.kill()
            second = _worker(env, tmp_path / "worker-2.log")
            try:

                async def all_delivered() -> bool:
                    async with rt.db.engine.connect() as conn:
                        delivered = await conn.scalar(
                            select(func.count())
                            .select_from(tables.deliveries)
                            .where(tables.deliveries.c.status == "delivered")
                        )
                    return delivered == EVENTS

                await eventually(all_delivered, timeout=60, interval=0.2)
            finally:
                second.terminate()
                second.wait(timeout=60)
            async with rt.db.engine.connect() as conn:
                unfinished = await conn.scalar(
                    select(func.count())
                    .select_from(tables.jobs)
                    .where(tables.jobs.c.state.in_(["pending", "running"]))
                )

    arrivals = Counter(d.headers["webhook-id"] for d in received)
    interrupted = received[KILL_AT - 1].headers["webhook-id"]
    assert len(arrivals) == EVENTS  # every event reached the receiver
    assert arrivals[interrupted] >= 2  # the interrupted request was sent again, same id
    assert unfinished == 0
