"""`tgrelay deliveries replay` and `list`: an operator resends an endpoint's past deliveries."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tgrelay.cli import app
from tgrelay.db import tables
from tgrelay.events import catalog, service
from tgrelay.events import store as event_store
from tgrelay.events.catalog import EventType
from tgrelay.events.models import DeliveryStatus
from tgrelay.queue import store as job_store
from tgrelay.queue.models import JobState
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
# What each delivery went through before the replay, one event an hour from T0.
HISTORY = [
    DeliveryStatus.DEAD_LETTER,  # 10:00
    DeliveryStatus.DELIVERED,  # 11:00
    DeliveryStatus.DEAD_LETTER,  # 12:00
    DeliveryStatus.PENDING,  # 13:00: its attempt is queued
    DeliveryStatus.DEAD_LETTER,  # 14:00
]


@dataclass(frozen=True, kw_only=True)
class Setup:
    workspace_id: str
    endpoint_id: str
    delivery_ids: list[int]  # in HISTORY's order
    last_job_id: int  # the jobs queued before the command ran go up to this id


@dataclass(frozen=True, kw_only=True)
class After:
    statuses: list[DeliveryStatus]  # in HISTORY's order
    new_jobs: list[tuple[str, int | None]]  # (kind, delivery id) queued since the setup


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A SQLite data dir the command finds through TGRELAY_* variables, as an operator's."""
    monkeypatch.delenv("TGRELAY_DATABASE_URL", raising=False)
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TGRELAY_WEBHOOKS_ALLOW_PRIVATE", "true")  # a loopback endpoint
    monkeypatch.setenv("TGRELAY_LOG_LEVEL", "WARNING")
    return Settings(_env_file=None)


@pytest.fixture
def setup(settings: Settings) -> Setup:
    """A workspace whose endpoint got one event an hour, left in HISTORY's statuses."""
    return asyncio.run(_setup(settings))


async def _setup(settings: Settings) -> Setup:
    async with open_runtime(settings) as rt:
        workspace, _ = await workspaces.create_workspace(rt.db, "Acme", now=T0)
        principal = Principal(workspace_id=workspace.id, actor="cli")
        created = await service.create_endpoint(
            rt, principal, url="http://127.0.0.1:9/hooks", event_types=None, description=None
        )
        endpoint_id = created.endpoint.id
        for hour in range(len(HISTORY)):
            async with rt.db.transaction() as conn:
                await service.emit(
                    conn,
                    rt,
                    workspace_id=workspace.id,
                    event_type=EventType.BOT_CONNECTED,
                    data=catalog.BotData(
                        bot_id=100 + hour, username=f"bot{hour}", mode="webhook", status="healthy"
                    ),
                    now=T0 + hour * HOUR,
                )
        async with rt.db.transaction() as conn:
            deliveries = tables.deliveries
            ids = [
                row.id
                for row in await conn.execute(
                    deliveries.select()
                    .where(deliveries.c.endpoint_id == endpoint_id)
                    .order_by(deliveries.c.id)
                )
            ]
            for delivery_id, status in zip(ids, HISTORY, strict=True):
                await conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == delivery_id)
                    .values(status=status.value, schedule_attempts=10, attempts=10)
                )
            # The emitted deliveries' attempts ran; only the pending one's is still queued.
            jobs = tables.jobs
            finished = [
                i for i, s in zip(ids, HISTORY, strict=True) if s is not DeliveryStatus.PENDING
            ]
            await conn.execute(
                update(jobs)
                .where(jobs.c.subject_id.in_(finished))
                .values(state=JobState.DONE.value)
            )
            last_job_id = max(job.id for job in await job_store.list_jobs(conn, state=None))
    return Setup(
        workspace_id=workspace.id,
        endpoint_id=endpoint_id,
        delivery_ids=ids,
        last_job_id=last_job_id,
    )


def after(settings: Settings, setup: Setup) -> After:
    async def read() -> After:
        async with open_runtime(settings) as rt, rt.db.engine.connect() as conn:
            deliveries = [
                await event_store.get_delivery(conn, setup.workspace_id, delivery_id)
                for delivery_id in setup.delivery_ids
            ]
            jobs = await job_store.list_jobs(
                conn, state=JobState.PENDING, after_id=setup.last_job_id
            )
        return After(
            statuses=[d.status for d in deliveries if d is not None],
            new_jobs=[(job.kind, job.subject_id) for job in jobs],
        )

    return asyncio.run(read())


def run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (with rich's line wrapping undone) of one command."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, unwrapped(result.stdout), unwrapped(result.stderr)


def unwrapped(text: str) -> str:
    """The words of rich's output, without its panel borders and line breaks."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", text).split())


def replay(setup: Setup, *options: str) -> tuple[int, str, str]:
    return run(
        "deliveries",
        "replay",
        "--workspace",
        setup.workspace_id,
        "--endpoint",
        setup.endpoint_id,
        *options,
    )


D, P = DeliveryStatus.DELIVERED, DeliveryStatus.PENDING
DL = DeliveryStatus.DEAD_LETTER


def test_replay_dead_letters_in_a_window(settings: Settings, setup: Setup) -> None:
    """Dead letters created in [since, until) become pending, with attempts queued oldest first."""
    outcome = replay(
        setup,
        "--since",
        "2026-11-21T10:00:00Z",
        "--until",
        "2026-11-21T14:00:00Z",
        "--status",
        "dead_letter",
    )
    first, _, third, _, _ = setup.delivery_ids
    assert outcome == (0, f"queued 2 deliveries of {setup.endpoint_id} to be sent again", "")
    assert after(settings, setup) == After(
        statuses=[P, D, P, P, DL],
        new_jobs=[(service.DELIVER_EVENT, first), (service.DELIVER_EVENT, third)],
    )


def test_replay_without_a_status_resends_delivered_and_dead_letters(
    settings: Settings, setup: Setup
) -> None:
    """With no --status, delivered and dead-letter deliveries since the instant are resent."""
    outcome = replay(setup, "--since", "2026-11-21T11:00:00+00:00")
    _, second, third, _, fifth = setup.delivery_ids
    assert outcome == (0, f"queued 3 deliveries of {setup.endpoint_id} to be sent again", "")
    assert after(settings, setup) == After(
        statuses=[DL, P, P, P, P],
        new_jobs=[(service.DELIVER_EVENT, i) for i in (second, third, fifth)],
    )


def test_replay_takes_an_instant_without_offset_as_utc(settings: Settings, setup: Setup) -> None:
    """`--since 2026-11-21T13:00` means 13:00 UTC, whatever the machine's zone."""
    outcome = replay(setup, "--since", "2026-11-21T13:00", "--status", "dead_letter")
    assert outcome == (0, f"queued 1 delivery of {setup.endpoint_id} to be sent again", "")
    assert after(settings, setup).new_jobs == [(service.DELIVER_EVENT, setup.delivery_ids[4])]


@pytest.mark.parametrize(
    ("options", "code", "error"),
    [
        (
            ["--since", "2026-11-21T12:00Z", "--until", "2026-11-21T11:00Z"],
            1,
            "error: until must be after since",
        ),
        (["--since", "yesterday"], 2, "'yesterday' is not an ISO 8601 date or time"),
        (["--since", "2026-11-21", "--status", "pending"], 2, "'pending' is not one of"),
    ],
)
def test_replay_refuses_bad_windows_and_statuses(
    settings: Settings, setup: Setup, options: list[str], code: int, error: str
) -> None:
    """An empty window, an unreadable instant or a pending status change nothing."""
    exit_code, stdout, stderr = replay(setup, *options)
    assert (exit_code, stdout, error in stderr) == (code, "", True), stderr
    assert after(settings, setup) == After(statuses=HISTORY, new_jobs=[])


def test_replay_of_an_unknown_endpoint_says_so(settings: Settings, setup: Setup) -> None:
    """An endpoint id the workspace does not have ends the command with its error."""
    outcome = run(
        "deliveries",
        "replay",
        "--workspace",
        setup.workspace_id,
        "--endpoint",
        "ep_0000000000000000",
        "--since",
        "2026-11-21",
    )
    assert outcome == (1, "", "error: no endpoint ep_0000000000000000")


def test_list_shows_an_endpoints_deliveries_newest_first(setup: Setup) -> None:
    """`deliveries list --status dead_letter` tables the dead letters, newest first."""
    result = CliRunner().invoke(
        app,
        [
            "deliveries",
            "list",
            "--workspace",
            setup.workspace_id,
            "--endpoint",
            setup.endpoint_id,
            "--status",
            "dead_letter",
        ],
    )
    first, _, third, _, fifth = setup.delivery_ids
    assert (result.exit_code, re.findall(r"dlv_\d+", result.stdout)) == (
        0,
        [f"dlv_{fifth}", f"dlv_{third}", f"dlv_{first}"],
    )
