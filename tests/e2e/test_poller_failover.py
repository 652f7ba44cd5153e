"""A polling bot's lease fails over: two `tgrelay worker` processes, the one polling is
SIGKILLed, and the other polls the bot within seconds (issue 22: within 10 s; the lease's
6 s plus a 2 s scan), not after the old 90 s lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from tgrelay.bots import service as bots
from tgrelay.db import tables
from tgrelay.inbox import poller
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.emulator_server import running_emulator
from tgrelay.workspaces import service as workspaces

from .harness import eventually

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann"}
# Issue 22 asks for 10 s; three times that for a busy machine, and still well short of the
# 90 s lease this replaced.
TAKEOVER_DEADLINE = 30.0


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tgrelay", "worker"], env=env, stdout=out, stderr=out
        )


async def _lease(rt: Runtime, bot_id: int) -> tuple[int, datetime] | None:
    """(holder's pid, expiry) of the bot's poller lease."""
    async with rt.db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(tables.leases.c.holder, tables.leases.c.expires_at).where(
                    tables.leases.c.name == f"poller:{bot_id}"
                )
            )
        ).first()
    return None if row is None else (int(str(row.holder).split(":")[1]), row.expires_at)


async def _stored(rt: Runtime, update_id: int) -> bool:
    async with rt.db.engine.connect() as conn:
        found = await conn.scalar(
            select(tables.updates.c.id).where(tables.updates.c.update_id == update_id)
        )
    return found is not None


async def test_a_killed_pollers_bot_is_polled_by_the_other_worker(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    async with running_emulator() as emulator:
        env = {
            **os.environ,
            "TGRELAY_DATA_DIR": str(tmp_path),
            "TGRELAY_SECRET_KEYS": key,
            "TGRELAY_TELEGRAM_API_URL": emulator.base_url,
            "TGRELAY_POLL_TIMEOUT_SECONDS": "20",  # long polls outlast the lease: renewed beside
            "TGRELAY_LOG_LEVEL": "WARNING",
        }
        settings = Settings(
            data_dir=tmp_path, telegram_api_url=emulator.base_url, secret_keys=(SecretStr(key),)
        )
        async with open_runtime(settings) as rt:
            workspace, _ = await workspaces.create_workspace(rt.db, "polls", now=rt.clock())
            principal = await workspaces.operator(rt.db, workspace.id)
            bot = emulator.emulator.create_bot("polled_bot")
            await bots.connect(rt, principal, bot.token)
            workers = {
                process.pid: process
                for process in (
                    _worker(env, tmp_path / "worker-1.log"),
                    _worker(env, tmp_path / "worker-2.log"),
                )
            }
            try:
                first = emulator.emulator.send_message(bot.id, ANN, None, "one")["update_id"]
                await eventually(lambda: _stored(rt, first), timeout=120, interval=0.1)
                lease = await _lease(rt, bot.id)
                assert lease is not None
                holder, expires_at = lease
                assert holder in workers

                async def renewed() -> bool:
                    # Renewed beside a long poll (20 s, past the 6 s lease), by the same holder.
                    now = await _lease(rt, bot.id)
                    assert now is not None
                    assert now[0] == holder
                    return now[1] >= expires_at + timedelta(seconds=poller.RENEW_SECONDS)

                await eventually(renewed, timeout=TAKEOVER_DEADLINE, interval=0.1)
                workers[holder].send_signal(signal.SIGKILL)  # no release: the lease must lapse
                workers[holder].wait()

                second = emulator.emulator.send_message(bot.id, ANN, None, "two")["update_id"]
                await eventually(
                    lambda: _stored(rt, second), timeout=TAKEOVER_DEADLINE, interval=0.1
                )
                (survivor,) = set(workers) - {holder}
                taken = await _lease(rt, bot.id)
                assert taken is not None
                assert taken[0] == survivor
            finally:
                for process in workers.values():
                    if process.poll() is None:
                        process.terminate()
                        process.wait(timeout=60)
