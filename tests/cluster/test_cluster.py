"""Cluster proof: 2 `serve --no-worker` + 2 `worker` on one PostgreSQL database and one Redis,
every process SIGKILLed at random moments under load, then PostgreSQL restarted and Redis
stopped and started again (servers of the test's own: tests/cluster/servers.py); the
processes carry on by themselves, and nothing acknowledged is lost.

The emulator runs in a process of its own (its flood control stamps sends when they arrive:
sharing the test's event loop would shift them) and pushes updates through a round-robin
balancer in the test (tests/cluster/balancer.py) to both API processes, while the test posts
group alerts and a local receiver takes the message.received deliveries.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.cluster import servers
from tests.cluster.balancer import RoundRobin
from tests.cluster.processes import Process, note
from tests.databases import administer
from tests.e2e.harness import eventually, free_port
from tgrelay.db import tables
from tgrelay.testing.receiver import Delivery, receiving
from tgrelay.testing.serving import serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# The load runs through the kills, then through the servers' restart and outage, and
# TAIL_SECONDS more.
CHAOS_SECONDS = 36.0
KILLS_PER_PROCESS = int(os.environ.get("TGRELAY_CLUSTER_KILLS", "2"))
# Kills fall in [KILL_MARGIN, CHAOS_SECONDS - KILL_MARGIN], at least KILL_GAP apart per process.
KILL_MARGIN = 4.0
KILL_GAP = 8.0
REDIS_DOWN_SECONDS = 5.0
# What the processes get, after PostgreSQL is up again and after Redis is, to show that each
# works again by itself (they need a few seconds: reconnection and retry backoffs).
RECOVERY_SECONDS = 30.0
TAIL_SECONDS = 3.0
# How long the drain after the load takes is the machine's speed (the alerts' backlog, a few
# hundred, goes out at the bot's 8/s); that it moves is the test's: it fails when what is left
# has not shrunk for DRAIN_STALL_SECONDS (longer than a killed worker's send can hold its
# chat: ratelimit.IN_FLIGHT_SECONDS, 15 s), or after DRAIN_SECONDS in all.
DRAIN_SECONDS = 300.0
DRAIN_STALL_SECONDS = 45.0
LEASE_SECONDS = 3  # a killed worker's jobs wait this long before another takes them

CHATS = 20  # private chats writing to the bot
UPDATES_PER_SECOND = 25
GROUPS = 6
ALERTS_PER_GROUP_PER_SECOND = 1.5  # 9/s in all: above the bot's limit, so sends queue
# Both sides enforce the same limits ((count, seconds)); the emulator refuses what Telegram
# would. The groups could take 12/s (6 x 2/s) and get 9 alerts/s, from a bot allowed 8/s: the
# bot's limit sets the pace, and only a limit shared by both workers (Redis) keeps it.
LIMITS: dict[str, tuple[int, float]] = {
    "per_chat": (1, 0.5),
    "per_group": (4, 2.0),
    "per_bot": (8, 1.0),
}
# A request sent just before its worker died is recorded by the receiver (on the test's busy
# event loop) a little later: a kill this long before a first arrival still explains a second.
RECEIVER_LAG_SECONDS = 1.0
# A send that got its turn just before Redis stopped may reach the emulator this much later.
SEND_LAG_SECONDS = 1.0
FIRST_ADMIN_ID = 5001
FIRST_USER_ID = 9001


@pytest.fixture
async def cluster_postgres() -> AsyncIterator[servers.PostgresCluster]:
    """A PostgreSQL cluster of the test's own (it restarts it), dropped afterwards."""
    async with servers.postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
async def cluster_redis(tmp_path: Path) -> AsyncIterator[servers.RedisServer]:
    """A redis-server of the test's own (it stops and starts it), stopped afterwards."""
    async with servers.redis_server(tmp_path / "redis.log") as server:
        yield server


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """A setup request that must succeed; its JSON body."""
    response = await client.request(method, path, **kwargs)
    assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


def person(user_id: int, name: str) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name, "username": f"u{user_id}"}


async def link_group(
    api: httpx.AsyncClient, emulator: httpx.AsyncClient, bot_id: int, index: int
) -> dict[str, Any]:
    """A group linked as an admin would (private /start, then adding the bot): its connection."""
    admin = person(FIRST_ADMIN_ID + index, "Admin")
    session = await call(api, "POST", "/v1/connect-sessions", json={"bot_id": bot_id})

    async def in_state(expected: str) -> bool:
        found = await call(api, "GET", f"/v1/connect-sessions/{session['id']}")
        return bool(found["state"] == expected)

    await call(
        emulator,
        "POST",
        "/_emulator/updates",
        json={"bot_id": bot_id, "from": admin, "text": f"/start {session['token']}"},
    )
    await eventually(lambda: in_state("waiting_group"), timeout=30, interval=0.1)
    chat = await call(
        emulator, "POST", "/_emulator/chats", json={"type": "supergroup", "title": f"G{index}"}
    )
    await call(
        emulator,
        "POST",
        f"/_emulator/chats/{chat['id']}/members",
        json={"bot_id": bot_id, "by": admin, "status": "member"},
    )
    await eventually(lambda: in_state("connected"), timeout=30, interval=0.1)
    found = await call(api, "GET", f"/v1/connect-sessions/{session['id']}")
    connection: dict[str, Any] = found["connection"]
    return connection


def kill_schedule(rng: random.Random) -> list[float]:
    """KILLS_PER_PROCESS moments in the load, KILL_GAP apart at least (time to start again)."""
    while True:
        times = sorted(
            rng.uniform(KILL_MARGIN, CHAOS_SECONDS - KILL_MARGIN) for _ in range(KILLS_PER_PROCESS)
        )
        if all(b - a >= KILL_GAP for a, b in itertools.pairwise(times)):
            return times


async def test_cluster_survives_sigkills_restarts_and_outages(
    cluster_postgres: servers.PostgresCluster,
    cluster_redis: servers.RedisServer,
    tmp_path: Path,
) -> None:
    """Under SIGKILLs of both APIs and both workers: every acknowledged update is stored and
    processed once in per-chat order, every alert sent in order, every event delivered, no
    finished job runs again, and the emulator refused no send (limits held across workers);
    after a PostgreSQL restart and while and after Redis is down, the same processes carry
    on by themselves, and no send goes out while Redis is down."""
    seed = int(os.environ.get("TGRELAY_CLUSTER_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    started = time.monotonic()
    await administer(make_url(cluster_postgres.url("postgres")), 'CREATE DATABASE "tgrelay"')
    database_url = cluster_postgres.url("tgrelay")
    emulator_port, api_ports = free_port(), [free_port(), free_port()]
    emulator_url = f"http://127.0.0.1:{emulator_port}"
    arrivals: list[tuple[str, float]] = []  # (webhook-id, time.monotonic()) per request

    async def record(delivery: Delivery) -> int:
        arrivals.append((delivery.headers["webhook-id"], time.monotonic()))
        return 200

    api_urls = [f"http://127.0.0.1:{port}" for port in api_ports]
    balancer = RoundRobin(api_urls)
    async with (
        serving(balancer, lifespan="off") as balanced,
        receiving(record) as receiver,
    ):
        env = {
            **os.environ,
            "TGRELAY_DATA_DIR": str(tmp_path),
            "TGRELAY_DATABASE_URL": database_url,
            "TGRELAY_DATABASE_POOL_SIZE": "6",
            "TGRELAY_WORKER_CONCURRENCY": "4",
            "TGRELAY_REDIS_URL": cluster_redis.url,
            "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
            "TGRELAY_TELEGRAM_API_URL": emulator_url,
            "TGRELAY_PUBLIC_URL": balanced.base_url,
            "TGRELAY_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "TGRELAY_HEALTH_INTERVAL_SECONDS": "3600",
            "TGRELAY_WEBHOOKS_ALLOW_PRIVATE": "true",
            "TGRELAY_SEND_LIMIT_PER_CHAT": json.dumps(LIMITS["per_chat"]),
            "TGRELAY_SEND_LIMIT_PER_GROUP": json.dumps(LIMITS["per_group"]),
            "TGRELAY_SEND_LIMIT_PER_BOT": json.dumps(LIMITS["per_bot"]),
            "TGRELAY_LOG_LEVEL": os.environ.get("TGRELAY_CLUSTER_LOG_LEVEL", "WARNING"),
        }
        emulator_process = Process(
            name="emulator",
            args=["emulator", "--port", str(emulator_port)],
            env=env,
            log=tmp_path / "emulator.log",
            ready_url=f"{emulator_url}/_emulator/flood",
        )
        setup = Process(name="setup", args=["migrate"], env=env, log=tmp_path / "setup.log")
        apis = [
            Process(
                name=f"api-{n}",
                args=["serve", "--no-worker", "--port", str(port)],
                env=env,
                log=tmp_path / f"api-{n}.log",
                ready_url=f"http://127.0.0.1:{port}/readyz",
            )
            for n, port in enumerate(api_ports, 1)
        ]
        workers = [
            Process(name=f"worker-{n}", args=["worker"], env=env, log=tmp_path / f"w{n}.log")
            for n in (1, 2)
        ]
        cluster = [*apis, *workers]
        await emulator_process.start()
        try:
            await setup.start()
            assert setup.popen is not None
            assert setup.popen.wait(timeout=120) == 0
            created = subprocess.run(
                [sys.executable, "-m", "tgrelay", "workspace", "create", "c", "--json"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            api_key = json.loads(created.stdout)["api_key"]
            await asyncio.gather(*(p.start() for p in cluster))
            async with (
                httpx.AsyncClient(
                    base_url=balanced.base_url,
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=30,
                ) as api,
                httpx.AsyncClient(base_url=emulator_url, timeout=30) as emulator,
            ):
                await run_cluster(
                    rng=rng,
                    api=api,
                    emulator=emulator,
                    receiver_url=receiver.url,
                    balancer=balancer,
                    apis=dict(zip(api_urls, apis, strict=True)),
                    workers=workers,
                    postgres=cluster_postgres,
                    redis_server=cluster_redis,
                    database_url=database_url,
                    arrivals=arrivals,
                    seed=seed,
                )
        finally:
            for process in [*cluster, emulator_process]:
                process.stop()
            await balancer.aclose()
    print(f"cluster test: seed {seed}, {time.monotonic() - started:.1f} s")


NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(kw_only=True)
class Outages:
    """When the servers went away and were back (time.monotonic()), and the wall clock's time
    of each return (jobs record their ends in it)."""

    postgres_restarting: float = math.nan  # pg_ctlcluster restart called
    postgres_up: float = math.nan  # ... and returned: the server accepts connections
    postgres_up_wall: datetime = NEVER
    redis_stopped: float = math.nan  # redis-server has exited
    redis_starting: float = math.nan
    redis_up: float = math.nan  # it answers PING again
    redis_up_wall: datetime = NEVER


async def run_cluster(
    *,
    rng: random.Random,
    api: httpx.AsyncClient,
    emulator: httpx.AsyncClient,
    receiver_url: str,
    balancer: RoundRobin,
    apis: dict[str, Process],  # by the base URL the balancer forwards to
    workers: list[Process],
    postgres: servers.PostgresCluster,
    redis_server: servers.RedisServer,
    database_url: str,
    arrivals: list[tuple[str, float]],
    seed: int,
) -> None:
    cluster = [*apis.values(), *workers]
    logs = [w.log for w in workers]
    timeline = logs[0].parent / "timeline.log"
    bot = await call(emulator, "POST", "/_emulator/bots", json={"username": "cluster_bot"})
    bot_id = bot["id"]
    await call(api, "POST", "/v1/bots", json={"token": bot["token"]})
    webhook = (await call(emulator, "GET", f"/_emulator/bots/{bot_id}"))["webhook"]
    assert webhook is not None
    assert webhook["url"].startswith(str(api.base_url))
    connections = [await link_group(api, emulator, bot_id, n) for n in range(GROUPS)]
    await call(
        api,
        "POST",
        "/v1/endpoints",
        json={"url": receiver_url, "event_types": ["message.received"]},
    )
    # The groups' confirmations and the admins' answers went out before the limits: wait
    # for them and for a slowest spacing, so the run measures the load's sends only.
    await until_drained(lambda: _work_left(database_url), "setting up", log=logs[0])
    await asyncio.sleep(2.5)
    # The emulator times its sends from this PUT (`sent_at`) on time.monotonic(), which is
    # CLOCK_MONOTONIC: one clock for every process of the machine.
    before = time.monotonic()
    flood = await call(emulator, "PUT", "/_emulator/flood", json={"enabled": True, **LIMITS})
    flood_on = (before + time.monotonic()) / 2
    note(logs[0], "flood control on")
    assert flood["rejected"] == 0

    loop = asyncio.get_running_loop()
    load_started = loop.time()
    load_over = asyncio.Event()
    injected: dict[int, int] = {}  # update_id -> chat (the user's private chat)
    posted: dict[str, list[str]] = {c["id"]: [] for c in connections}
    posted_at: list[float] = []  # time.monotonic() of each alert's acceptance

    async def inject() -> None:
        count = 0
        while not load_over.is_set():
            chat = FIRST_USER_ID + count % CHATS
            update = await call(
                emulator,
                "POST",
                "/_emulator/updates",
                json={"bot_id": bot_id, "from": person(chat, "User"), "text": f"m{count}"},
            )
            injected[update["update_id"]] = chat
            count += 1
            await asyncio.sleep(max(0.0, load_started + count / UPDATES_PER_SECOND - loop.time()))

    async def alert(connection_id: str) -> None:
        # One poster per group: a group's alerts are accepted in this order.
        count = 0
        while not load_over.is_set():
            text = f"alert {connection_id[-6:]} {count:04d}"
            body = {"connection_id": connection_id, "text": text, "idempotency_key": text}
            while True:  # a 5xx (its API killed, PostgreSQL restarting) is retried; the key
                try:  # keeps it one alert
                    response = await api.post("/v1/notifications", json=body)
                    if response.status_code == 202:
                        break
                    assert response.status_code >= 500, response.text
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            posted[connection_id].append(text)
            posted_at.append(time.monotonic())
            count += 1
            await asyncio.sleep(
                max(0.0, load_started + count / ALERTS_PER_GROUP_PER_SECOND - loop.time())
            )

    async def chaos(process: Process) -> None:
        for moment in kill_schedule(rng):
            await asyncio.sleep(max(0.0, load_started + moment - loop.time()))
            process.kill()
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            await process.start()

    engine = create_async_engine(database_url, poolclass=NullPool)

    async def done_by(worker: Process, *, since: datetime, kind: str | None = None) -> bool:
        """Whether `worker`'s current process finished a job (of `kind`) after `since`."""
        assert worker.popen is not None
        query = (
            select(func.count())
            .select_from(tables.jobs)
            .where(
                tables.jobs.c.state == "done",
                # A worker's id names its process: host:pid:random (queue.worker).
                tables.jobs.c.locked_by.like(f"%:{worker.popen.pid}:%"),
                tables.jobs.c.finished_at > since,
            )
        )
        if kind is not None:
            query = query.where(tables.jobs.c.kind == kind)
        async with engine.connect() as conn:
            return bool(await conn.scalar(query))

    async def processed_since(moment: datetime) -> bool:
        """Whether an update received after `moment` (so pushed after it; its push is
        acknowledged once it is stored) was stored and processed."""
        async with engine.connect() as conn:
            found = await conn.scalar(
                select(func.count())
                .select_from(tables.updates)
                .join(tables.jobs, tables.jobs.c.subject_id == tables.updates.c.id)
                .where(
                    tables.jobs.c.kind == "process_update",
                    tables.jobs.c.state == "done",
                    tables.updates.c.bot_id == bot_id,
                    tables.updates.c.received_at > moment,
                )
            )
        return bool(found)

    async def sent_since(moment: float) -> bool:
        """Whether a send reached the emulator after `moment`."""
        report = await call(emulator, "GET", "/_emulator/flood")
        return any(flood_on + at > moment for _, at in report["sent_at"])

    async def after_postgres(outages: Outages) -> list[str]:
        """What has not happened yet since PostgreSQL was up again."""
        up, up_wall = outages.postgres_up, outages.postgres_up_wall
        missing = [
            f"{process.name} acknowledged no update"
            for url, process in apis.items()
            if not any(
                a.backend == url and a.path.startswith("/telegram/") and a.status == 200
                for a in balancer.answers
                if a.at > up
            )
        ]
        missing += [
            f"{w.name} finished no job" for w in workers if not await done_by(w, since=up_wall)
        ]
        if not await processed_since(up_wall):
            missing.append("no update pushed since was processed")
        if not any(at > up for _, at in arrivals):
            missing.append("no event was delivered")
        if not await sent_since(up):
            missing.append("no alert was sent")
        return missing

    async def after_redis(outages: Outages) -> list[str]:
        """What has not happened yet since Redis was up again."""
        missing = [
            f"{w.name} finished no send"
            for w in workers
            if not await done_by(w, since=outages.redis_up_wall, kind="telegram_send")
        ]
        if not await sent_since(outages.redis_up):
            missing.append("no alert was sent")
        return missing

    async def working() -> list[str]:
        """Which workers have finished no job yet (one started again may not have)."""
        return [f"{w.name} finished no job" for w in workers if not await done_by(w, since=NEVER)]

    async def disrupt() -> Outages:
        """The kills, then the restart and the outage, each once the processes work."""
        await asyncio.gather(*(chaos(p) for p in cluster))
        await asyncio.sleep(max(0.0, load_started + CHAOS_SECONDS - loop.time()))
        await until_nothing_missing(working, "before PostgreSQL's restart", log=logs[0])
        pids = {p.name: p.popen.pid for p in cluster if p.popen is not None}
        outages = Outages()
        note(logs[0], "PostgreSQL restarting")
        outages.postgres_restarting = time.monotonic()
        await postgres.restart()
        outages.postgres_up = time.monotonic()
        outages.postgres_up_wall = datetime.now(UTC)
        note(logs[0], "PostgreSQL up")
        await until_nothing_missing(
            lambda: after_postgres(outages), "after PostgreSQL's restart", log=logs[0]
        )

        note(logs[0], "Redis stopping")
        await redis_server.stop()
        outages.redis_stopped = time.monotonic()
        note(logs[0], "Redis stopped")
        await asyncio.sleep(REDIS_DOWN_SECONDS)  # the outage itself
        outages.redis_starting = time.monotonic()
        await redis_server.start()
        outages.redis_up = time.monotonic()
        outages.redis_up_wall = datetime.now(UTC)
        note(logs[0], "Redis up")
        await until_nothing_missing(
            lambda: after_redis(outages), "after Redis was back", log=logs[0]
        )

        # Nobody restarted a process for them: the same ones ran on.
        assert {p.name: p.popen.pid for p in cluster if p.popen is not None} == pids
        assert all(p.alive() for p in cluster)
        await asyncio.sleep(TAIL_SECONDS)
        return outages

    async def load_until(disruptions: Awaitable[Outages]) -> Outages:
        try:
            return await disruptions
        finally:
            load_over.set()

    disrupting = asyncio.ensure_future(load_until(disrupt()))
    try:
        await asyncio.gather(disrupting, inject(), *(alert(c["id"]) for c in connections))
    finally:
        await engine.dispose()
    outages = disrupting.result()
    assert all(p.alive() for p in cluster)

    # Drain: Telegram's side has nothing left to push, tgrelay's nothing left to do.
    async def left_to_do() -> dict[str, int]:
        pending = await call(emulator, "GET", f"/_emulator/bots/{bot_id}/updates")
        left = {"updates not pushed": len(pending)} if pending else {}
        return left | await _work_left(database_url)

    note(logs[0], "load over")
    await until_drained(left_to_do, f"draining (seed {seed})", log=logs[0])
    note(logs[0], "drained")

    # While Redis was down no send went out (fail closed); alerts were asked for meanwhile.
    flood = await call(emulator, "GET", "/_emulator/flood")
    during = [
        flood_on + at
        for _, at in flood["sent_at"]
        if outages.redis_stopped + SEND_LAG_SECONDS < flood_on + at < outages.redis_starting
    ]
    assert during == [], (f"seed {seed}", outages, during)
    assert any(outages.redis_stopped < at < outages.redis_starting for at in posted_at)

    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        await check_outcome(
            engine=engine,
            emulator=emulator,
            bot_id=bot_id,
            injected=injected,
            connections=connections,
            posted=posted,
            arrivals=arrivals,
            # A worker killed, or PostgreSQL restarting under it, may leave a delivery or a
            # send done but not recorded: it runs again once its lease expires.
            disruptions=sorted(
                [t for w in workers for t in w.kills]
                + [outages.postgres_restarting, outages.postgres_up]
            ),
            duplicate_warnings=sum(
                log.read_text(errors="replace").count("telegram.possible_duplicate_send")
                for log in logs
            ),
            seed=seed,
            timeline=timeline,
        )
    finally:
        await engine.dispose()


async def until_nothing_missing(
    missing: Callable[[], Awaitable[list[str]]], when: str, *, log: Path
) -> None:
    """Wait until `missing()` names nothing, noting in the timeline what it names as that
    changes; fail with what it still named after RECOVERY_SECONDS."""
    last: list[str] | None = None

    async def complete() -> bool:
        nonlocal last
        found = await missing()
        if found != last:
            note(log, f"{when}: missing {found}")
        last = found
        return not found

    try:
        await eventually(complete, timeout=RECOVERY_SECONDS, interval=0.25)
    except TimeoutError:
        raise AssertionError(f"{when}, within {RECOVERY_SECONDS:g} s: {last}") from None


async def until_drained(
    left_to_do: Callable[[], Awaitable[dict[str, int]]], when: str, *, log: Path
) -> None:
    """Wait until `left_to_do()` counts nothing, noting in the timeline what it counts as that
    changes; fail when its total has not fallen for DRAIN_STALL_SECONDS, or after
    DRAIN_SECONDS."""
    loop = asyncio.get_running_loop()
    started = least_at = loop.time()
    least = math.inf
    last: dict[str, int] | None = None
    while True:
        left = await left_to_do()
        if left != last:
            note(log, f"{when}: left {left}")
        last, total, now = left, sum(left.values()), loop.time()
        if not total:
            return
        if total < least:
            least, least_at = total, now
        if now - least_at > DRAIN_STALL_SECONDS:
            raise AssertionError(f"{when}: stuck for {DRAIN_STALL_SECONDS:g} s at {left}")
        if now - started > DRAIN_SECONDS:
            raise AssertionError(f"{when}: not done after {DRAIN_SECONDS:g} s: {left}")
        await asyncio.sleep(0.5)


async def _work_left(database_url: str) -> dict[str, int]:
    """What is still to do, told apart enough to say why it waits: updates' and sends' jobs
    pending or running (by kind, state, blocked, due or not), deliveries not yet delivered
    and alerts not yet sent (by status)."""
    jobs, deliveries, alerts = tables.jobs, tables.deliveries, tables.notifications
    now = datetime.now(UTC)
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        jobs.c.kind,
                        jobs.c.state,
                        jobs.c.blocked,
                        func.count(),
                        func.count().filter(jobs.c.run_at > now),
                    )
                    .where(jobs.c.state.in_(["pending", "running"]))
                    .where(jobs.c.kind.in_(["process_update", "telegram_send"]))
                    .group_by(jobs.c.kind, jobs.c.state, jobs.c.blocked)
                )
            ).all()
            left = {
                f"{kind} {state}{' blocked' if blocked else ''} ({later} not due)": count
                for kind, state, blocked, count, later in rows
            }
            for table, label in ((deliveries, "deliveries"), (alerts, "alerts")):
                done = "delivered" if table is deliveries else "sent"
                counts = await conn.execute(
                    select(table.c.status, func.count())
                    .where(table.c.status != done)
                    .group_by(table.c.status)
                )
                left |= {f"{label} {status}": count for status, count in counts}
    finally:
        await engine.dispose()
    return dict(sorted(left.items()))


def refusals(flood: dict[str, Any]) -> list[str]:
    """Each 429 the emulator answered, placed among the sends accepted before it: which
    windows were full, and how long before the refusal their oldest send counted arrived."""
    sent: list[tuple[int, float]] = [(chat, at) for chat, at in flood["sent_at"]]
    found = []
    for chat, at in flood["rejected_at"]:
        full = []
        for name, keep in (
            ("per_chat", lambda c: c == chat),  # noqa: B023 - used within this iteration
            ("per_group", lambda c: c == chat and chat < 0),  # noqa: B023
            ("per_bot", lambda c: True),
        ):
            count, window = LIMITS[name]
            recent = sorted(t for c, t in sent if keep(c) and at - window < t <= at)
            if len(recent) >= count:
                full.append(f"{name} {len(recent)} since {at - recent[-count]:.4f} s")
        found.append(f"chat {chat} at {at:.4f} s: {', '.join(full) or 'no window full'}")
    return found


async def check_outcome(
    *,
    engine: AsyncEngine,
    emulator: httpx.AsyncClient,
    bot_id: int,
    injected: dict[int, int],
    connections: list[dict[str, Any]],
    posted: dict[str, list[str]],
    arrivals: list[tuple[str, float]],
    disruptions: list[float],
    duplicate_warnings: int,
    seed: int,
    timeline: Path,
) -> None:
    context = f"seed {seed}"
    async with engine.connect() as conn:
        stored = Counter(
            await conn.scalars(
                select(tables.updates.c.update_id).where(
                    tables.updates.c.bot_id == bot_id, tables.updates.c.chat_id >= FIRST_USER_ID
                )
            )
        )
        update_jobs = (
            await conn.execute(
                select(tables.updates.c.update_id, tables.jobs.c.state)
                .join(tables.jobs, tables.jobs.c.subject_id == tables.updates.c.id)
                .where(
                    tables.jobs.c.kind == "process_update",
                    tables.updates.c.chat_id >= FIRST_USER_ID,
                )
            )
        ).all()
        dead = (
            await conn.execute(
                select(tables.jobs.c.kind, tables.jobs.c.last_error).where(
                    tables.jobs.c.state == "dead"
                )
            )
        ).all()
        # Deliveries get ids from one sequence, in the order their events are written (in
        # the update's processing transaction): per chat, the order updates were processed.
        announced = (
            await conn.execute(
                select(tables.deliveries.c.id, tables.events.c.id, tables.events.c.body)
                .join(tables.events, tables.events.c.id == tables.deliveries.c.event_id)
                .where(tables.events.c.type == "message.received")
                .order_by(tables.deliveries.c.id)
            )
        ).all()
        succeeded = Counter(
            await conn.scalars(
                select(tables.delivery_attempts.c.delivery_id).where(
                    tables.delivery_attempts.c.succeeded.is_(True)
                )
            )
        )
        alerts = (
            await conn.execute(
                select(
                    tables.notifications.c.connection_id,
                    tables.notifications.c.text,
                    tables.notifications.c.status,
                )
            )
        ).all()

    # Nothing acknowledged lost, nothing stored twice: the emulator drops an update from its
    # queue only on a 2xx, and has none left.
    assert stored == Counter(list(injected)), context
    assert sorted(u for u, _ in update_jobs) == sorted(injected), context  # one job each
    assert {state for _, state in update_jobs} == {"done"}, context
    assert dead == [], context

    # Processed once, in per-chat order.
    update_of_event = {
        event_id: json.loads(body)["data"]["update_id"] for _, event_id, body in announced
    }
    announced = [row for row in announced if update_of_event[row[1]] in injected]
    update_of_event = {e: u for e, u in update_of_event.items() if u in injected}
    announced_updates = [update_of_event[event_id] for _, event_id, _ in announced]
    assert sorted(announced_updates) == sorted(injected), context
    by_chat: dict[int, list[int]] = defaultdict(list)
    for update_id in announced_updates:
        by_chat[injected[update_id]].append(update_id)
    for chat, processed in by_chat.items():
        assert processed == sorted(processed), (context, chat)

    # Every event delivered; a delivery arrived twice only when a worker died (or PostgreSQL
    # restarted) between its first and its second arrival (at least once, never again once
    # its outcome committed).
    delivery_ids = [delivery_id for delivery_id, _, _ in announced]
    assert all(succeeded[d] == 1 for d in delivery_ids), context
    first_arrival: dict[str, float] = {}
    unexplained: list[str] = []
    for webhook_id, at in arrivals:
        if webhook_id not in update_of_event:
            continue
        if webhook_id not in first_arrival:
            first_arrival[webhook_id] = at
        elif not any(
            first_arrival[webhook_id] - RECEIVER_LAG_SECONDS <= moment <= at
            for moment in disruptions
        ):
            nearest = min(disruptions, key=lambda k: abs(k - at), default=None)
            unexplained.append(f"{webhook_id} at {first_arrival[webhook_id]}, {at}: {nearest}")
    assert set(first_arrival) == set(update_of_event), context
    assert unexplained == [], context

    # Every alert accepted was sent, each group's in the order posted; a send repeated only
    # after a worker died holding it (each such run logs telegram.possible_duplicate_send).
    assert {status for _, _, status in alerts} == {"sent"}, context
    assert sorted(t for _, t, _ in alerts) == sorted(t for ts in posted.values() for t in ts)
    repeated = 0
    for connection in connections:
        messages = await call(emulator, "GET", f"/_emulator/chats/{connection['chat_id']}/messages")
        texts = [m["text"] for m in messages if m["text"].startswith("alert ")]
        collapsed = [t for n, t in enumerate(texts) if n == 0 or texts[n - 1] != t]
        repeated += len(texts) - len(collapsed)
        assert collapsed == posted[connection["id"]], (context, connection["id"])
    assert repeated <= duplicate_warnings, context

    # Telegram's limits held across both workers: the emulator refused nothing.
    flood = await call(emulator, "GET", "/_emulator/flood")
    (timeline.parent / "flood.json").write_text(json.dumps(flood))
    assert flood["rejected"] == 0, (context, refusals(flood))
