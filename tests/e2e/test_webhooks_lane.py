"""`tgrelay serve` delivers webhooks from a child process of its own (tgrelay/lanes/): started
once there is something to deliver, started again when it dies, counted in serve's /metrics,
and gone when serve stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import func, select

from tgrelay.db import tables
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.lanes.parent import CHILD_MODULE
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.receiver import receiving
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

from .harness import eventually, free_port

EVENTS = 10


def lane_pids(serve: subprocess.Popen[bytes]) -> list[int]:
    """The running webhooks lane children of `serve`."""
    found = []
    for task in Path(f"/proc/{serve.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue  # it ended meanwhile
            if CHILD_MODULE.encode() in command:
                found.append(int(child))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def emit(rt: Runtime, workspace_id: str, first: int) -> None:
    """EVENTS events written by this process, as the CLI or another API process would."""
    async with rt.db.transaction() as conn:
        for number in range(first, first + EVENTS):
            await events.emit(
                conn,
                rt,
                workspace_id=workspace_id,
                event_type=EventType.ENDPOINT_DISABLED,
                data=catalog.EndpointDisabledData(
                    endpoint_id=f"ep_{number}", url="https://example.com", reason="test"
                ),
            )


def delivered(rt: Runtime, expected: int) -> Callable[[], Awaitable[bool]]:
    """A check: `expected` deliveries are marked delivered."""

    async def check() -> bool:
        async with rt.db.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(tables.deliveries)
                .where(tables.deliveries.c.status == "delivered")
            )
        return count == expected

    return check


async def test_serve_delivers_from_its_lane_child_which_comes_back_after_a_kill(
    tmp_path: Path,
) -> None:
    key = Fernet.generate_key().decode()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(tmp_path),
        "TGRELAY_SECRET_KEYS": key,
        "TGRELAY_PORT": str(port),
        "TGRELAY_WEBHOOKS_ALLOW_PRIVATE": "true",
        "TGRELAY_JOB_LEASE_SECONDS": "2",
        "TGRELAY_TELEGRAM_API_URL": "http://127.0.0.1:9",  # no bots: never called
        "TGRELAY_LOG_LEVEL": "WARNING",
    }
    settings = Settings(
        data_dir=tmp_path, secret_keys=(SecretStr(key),), webhooks_allow_private=True
    )
    async with receiving() as receiver, open_runtime(settings) as rt:
        workspace, _ = await workspaces.create_workspace(rt.db, "lane", now=rt.clock())
        with (tmp_path / "serve.log").open("ab") as log:
            serve = subprocess.Popen(
                [sys.executable, "-m", "tgrelay", "serve"], env=env, stdout=log, stderr=log
            )
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:

                async def ready() -> bool:
                    try:
                        return (await http.get("/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(ready, timeout=120, interval=0.1)
                # Nothing to deliver yet: no second interpreter.
                assert lane_pids(serve) == []

                principal = Principal(workspace_id=workspace.id, actor="test")
                await events.create_endpoint(
                    rt, principal, url=receiver.url, event_types=None, description=None
                )
                await emit(rt, workspace.id, first=0)
                await eventually(delivered(rt, EVENTS), timeout=60)
                (first_lane,) = lane_pids(serve)
                async with rt.db.engine.connect() as conn:
                    workers = set(
                        await conn.scalars(
                            select(tables.jobs.c.locked_by).where(
                                tables.jobs.c.kind == events.DELIVER_EVENT
                            )
                        )
                    )
                # Worker ids read host:pid:random; the lane's, not serve's, ran them.
                assert {str(w).split(":")[-2] for w in workers} == {str(first_lane)}
                metrics = (await http.get("/metrics")).text
                assert f'tgrelay_delivery_attempts_total{{outcome="delivered"}} {EVENTS}.0' in (
                    metrics
                )
                # The processes' CPU, for the capacity model (docs/scaling.md).
                assert "\nprocess_cpu_seconds_total " in metrics

                os.kill(first_lane, signal.SIGKILL)
                await emit(rt, workspace.id, first=EVENTS)

                async def lane_again() -> bool:
                    return [pid for pid in lane_pids(serve) if pid != first_lane] != []

                await eventually(lane_again, timeout=60, interval=0.1)
                await eventually(delivered(rt, 2 * EVENTS), timeout=60)
                (second_lane,) = lane_pids(serve)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
        # It stopped with serve: serve waits for it before it exits.
        assert not running(second_lane)
        arrivals = Counter(d.headers["webhook-id"] for d in receiver.receiver.deliveries)
        assert len(arrivals) == 2 * EVENTS
