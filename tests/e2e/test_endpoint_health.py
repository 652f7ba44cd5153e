"""End to end, on a clock the test moves: an endpoint's breaker opens, probes and closes; an
endpoint failing for days is disabled with an event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from tgrelay.app import TgrelayApp
from tgrelay.db import tables
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.runtime import Runtime
from tgrelay.testing import clock as test_clock
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.receiver import Delivery, RunningReceiver, receiving
from tgrelay.testing.serving import serving
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

from .harness import eventually, free_port, settings_for

BREAKER_FAILURES = 3
COOL_OFF = 600.0  # seconds of the test's clock: far longer than the test runs


@dataclass(frozen=True, kw_only=True)
class Setup:
    rt: Runtime
    clock: test_clock.Clock
    principal: Principal


@asynccontextmanager
async def _relay(
    emulator: RunningEmulator, tmp_path: Path, **overrides: object
) -> AsyncIterator[Setup]:
    clock = test_clock.Clock()
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        webhooks_allow_private=True,
        webhooks_breaker_failures=BREAKER_FAILURES,
        webhooks_breaker_open_seconds=COOL_OFF,
        **overrides,
    )
    app = TgrelayApp(settings, clock=clock)
    async with serving(app, port=port):
        rt: Runtime = app.api.state.runtime
        workspace, _ = await workspaces.create_workspace(rt.db, "health", now=rt.clock())
        yield Setup(
            rt=rt, clock=clock, principal=Principal(workspace_id=workspace.id, actor="test")
        )


async def _emit(setup: Setup, count: int) -> None:
    async with setup.rt.db.transaction() as conn:
        for number in range(count):
            await events.emit(
                conn,
                setup.rt,
                workspace_id=setup.principal.workspace_id,
                event_type=EventType.GROUP_STATUS_CHANGED,
                data=catalog.GroupStatusData(
                    connection_id=f"conn_{number}", bot_id=1, chat_id=-1, status="bot_removed"
                ),
            )
    setup.rt.notify_queue("webhooks")


async def _endpoint_row(setup: Setup, endpoint_id: str) -> tuple[str, str, int]:
    async with setup.rt.db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    tables.endpoints.c.status,
                    tables.endpoints.c.breaker_state,
                    tables.endpoints.c.consecutive_failures,
                ).where(tables.endpoints.c.id == endpoint_id)
            )
        ).one()
    return row.status, row.breaker_state, row.consecutive_failures


async def _until_attempts(setup: Setup, endpoint_id: str, count: int) -> None:
    """Wait until the endpoint's delivery has recorded `count` attempts (and its next job)."""

    async def recorded() -> bool:
        async with setup.rt.db.engine.connect() as conn:
            attempts = await conn.scalar(
                select(tables.deliveries.c.attempts).where(
                    tables.deliveries.c.endpoint_id == endpoint_id
                )
            )
        return attempts == count

    await eventually(recorded)


async def _subscribe(setup: Setup, receiver: RunningReceiver, *types: str) -> str:
    created = await events.create_endpoint(
        setup.rt, setup.principal, url=receiver.url, event_types=list(types), description=None
    )
    return created.endpoint.id


async def test_breaker_opens_then_one_probe_closes_it(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """After N consecutive failures no request reaches the endpoint until the cool-off ends;
    then a single probe goes, and its success closes the breaker and lets the rest through."""
    healthy = False

    async def flaky(delivery: Delivery) -> int:
        return 200 if healthy else 500

    async with (
        _relay(emulator, tmp_path, webhooks_retry_schedule=[0, 0, 0, 0, 0, 0]) as setup,
        receiving(flaky) as receiver,
    ):
        endpoint_id = await _subscribe(setup, receiver, "group.status_changed")
        await _emit(setup, 1)

        async def opened() -> bool:
            return (await _endpoint_row(setup, endpoint_id))[1] == "open"

        await eventually(opened)
        await _emit(setup, 4)  # these wait for the probe
        failed_before_cool_off = len(receiver.receiver.deliveries)

        healthy = True
        setup.clock.advance(COOL_OFF)
        setup.rt.notify_queue("webhooks")

        async def closed_and_delivered() -> bool:
            return len({d.headers["webhook-id"] for d in receiver.receiver.deliveries}) == 5

        await eventually(closed_and_delivered)
        state = await _endpoint_row(setup, endpoint_id)

    assert failed_before_cool_off == BREAKER_FAILURES
    assert state == ("enabled", "closed", 0)


async def test_endpoint_failing_for_days_is_disabled_with_an_event(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Failures spread over five days without a success disable the endpoint, dead-letter
    what was pending, and tell the other endpoints with endpoint.disabled."""

    async def broken(delivery: Delivery) -> int:
        return 503

    async with (
        _relay(
            emulator,
            tmp_path,
            webhooks_retry_schedule=[0, 86400, 86400, 86400],
            webhooks_retry_jitter=0,
        ) as setup,
        receiving(broken) as failing,
        receiving() as watcher,
    ):
        doomed = await _subscribe(setup, failing, "group.status_changed")
        await _subscribe(setup, watcher, "endpoint.disabled")
        await _emit(setup, 1)
        await _until_attempts(setup, doomed, 1)
        for day in range(1, 6):
            setup.clock.advance(86400)  # the next retry is due
            setup.rt.notify_queue("webhooks")
            if day < 4:
                await _until_attempts(setup, doomed, day + 1)
        # Retries ran out after day 3; a new event on day 5 fails once more and tips it over.
        await _emit(setup, 1)
        [notice] = await watcher.receiver.wait_for(1)
        status = await _endpoint_row(setup, doomed)

    body = notice.json()
    assert body["type"] == "endpoint.disabled"
    assert body["data"]["endpoint_id"] == doomed
    assert body["data"]["reason"] == "failing without a success for 5 days"
    assert status[0] == "disabled"
