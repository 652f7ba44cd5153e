"""Benchmark outgoing events: deliveries/s of one worker process, and event-to-delivery latency.

Three processes on loopback: a fast receiver (this script with --serve-receiver: raw asyncio
and httptools, answering 200 at once and noting when each webhook-id arrived), `tgrelay
worker` (both lanes; the process under test), and this script, which writes events into the
same database with `events.service.emit_many` (a transaction per batch or tick, as the app's
code writes events with the change they describe). This script stands for an API process
(`serve --no-worker`): it runs no worker, and the worker is another process, so the run is
split by construction. An in-process wake does not cross processes: on SQLite the worker
finds the events' jobs by its looks; on PostgreSQL their NOTIFY wakes it
(db/notifications.py).
httptools and uvloop come with uvicorn[standard]; --profile needs py-spy (`pip install
py-spy`). Not part of the test suite.

1. Throughput: N events for one endpoint are written while the worker is stopped; the worker
   starts, and the rate is counted from the first arrival to the N-th. Afterwards every
   delivery must be `delivered` in the database and every webhook-id at the receiver.
2. Latency: events at a steady rate for D seconds (after a warm-up) with the worker running;
   latency is the receiver's arrival time minus the event's timestamp (the body's
   `timestamp`, the events row's `created_at`), both wall clocks of this machine.

    uv run python bench/deliveries.py                     # SQLite: 20,000 events, then 1,000/s for 10 s
    uv run python bench/deliveries.py --db postgres       # PostgreSQL on 127.0.0.1:5432
    uv run python bench/deliveries.py --events 0 --rate 2000 --duration 20 --worker-concurrency 128
    uv run python bench/deliveries.py --profile /tmp/worker.svg   # py-spy on the worker, phase 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import httptools
import httpx
import orjson
import uvloop
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from servers import free_port, process, profiled, recreate_postgres_database, wait_http
from tgrelay.db import tables
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.observability import configure_logging
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.workspaces import service as workspaces

POSTGRES_DATABASE = "tgrelay_bench_deliveries"
HOOK_PATH = "/hook"
# A phase gives up waiting (and reports what is missing) after this long without an arrival,
# which also covers the worker's start.
STALL_SECONDS = 30.0
ARRIVAL_POLL_SECONDS = 0.05
USER = catalog.UserRef(id=5001, is_bot=False, first_name="Ann", username="ann")
CHAT = catalog.ChatRef(id=-100777, type="supergroup", title="Team")


# --- the receiver (its own process) ---------------------------------------------------------

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class ReceiverProtocol(asyncio.Protocol):
    """One connection: POST /hook is noted and answered 200; /_count, /_arrivals and /_reset
    let the bench read and clear the notes."""

    def __init__(self, arrivals: list[tuple[str, float]]) -> None:
        self.arrivals = arrivals
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.webhook_id = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self.webhook_id = value.decode()

    def on_message_complete(self) -> None:
        received = time.time()
        url, self.url = self.url, b""
        webhook_id, self.webhook_id = self.webhook_id, ""
        if url == HOOK_PATH.encode():
            self.arrivals.append((webhook_id, received))
            self._answer(OK)
        elif url == b"/_count":
            self._answer_json(len(self.arrivals))
        elif url == b"/_arrivals":
            self._answer_json(self.arrivals)
        elif url == b"/_reset":
            self.arrivals.clear()
            self._answer(OK)
        else:
            self._answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def _answer_json(self, value: object) -> None:
        body = orjson.dumps(value)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        self._answer(head % len(body) + body)

    def _answer(self, response: bytes) -> None:
        assert self.transport is not None
        self.transport.write(response)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve_receiver(
    port: int,
    protocol: Callable[[list[tuple[str, float]]], asyncio.Protocol] = ReceiverProtocol,
) -> None:
    """Listen on `port` until SIGTERM; `protocol` (given the shared arrivals) serves each
    connection: ReceiverProtocol, or a subclass noting more (bench/e2e.py's)."""
    arrivals: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: protocol(arrivals), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


# --- the producer (this process) ------------------------------------------------------------


def message(n: int, now: datetime) -> catalog.MessageData:
    """A message.received payload of a realistic size (about 800 bytes as JSON)."""
    text = f"order #{n} is ready for pickup at the front desk"
    raw = {
        "message_id": n,
        "from": USER.model_dump(exclude_none=True),
        "chat": CHAT.model_dump(exclude_none=True),
        "date": int(now.timestamp()),
        "text": text,
    }
    return catalog.MessageData(
        bot_id=1,
        update_id=n,
        message_id=n,
        chat=CHAT,
        from_=USER,
        date=now,
        text=text,
        message=raw,
        consumed_by=None,
    )


class Producer:
    """Emits message.received events for one workspace; remembers each event's timestamp."""

    def __init__(self, rt: Runtime, workspace_id: str) -> None:
        self.rt = rt
        self.workspace_id = workspace_id
        self.created: dict[str, float] = {}  # event id (the webhook-id) -> its timestamp

    async def emit(self, count: int) -> None:
        """`count` events in one transaction, as `events.emit_many` writes a batch."""
        now = self.rt.clock()
        first = len(self.created)
        batch = [
            events.NewEvent(
                event_type=catalog.EventType.MESSAGE_RECEIVED, data=message(first + n, now)
            )
            for n in range(count)
        ]
        async with self.rt.db.transaction() as conn:
            event_ids = await events.emit_many(
                conn, self.rt, workspace_id=self.workspace_id, events=batch, now=now
            )
        self.created |= dict.fromkeys(event_ids, now.timestamp())

    async def preload(self, count: int, batch: int) -> None:
        for first in range(0, count, batch):
            await self.emit(min(batch, count - first))

    async def steadily(self, rate: float, seconds: float, tick: float) -> float:
        """`rate` events/s for `seconds`, a transaction per `tick`; the seconds it took."""
        total = round(rate * seconds)
        start = time.monotonic()
        done = 0
        while done < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            if due > done:
                await self.emit(due - done)
                done = due
            next_tick = start + (done / rate) + tick
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        return time.monotonic() - start


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Arrivals:
    """What the receiver saw of the events one phase emitted."""

    first: dict[str, float]  # event id -> its first arrival
    duplicates: int  # arrivals beyond the first of an event id
    unexpected: int  # arrivals of ids this phase did not emit
    missing: int  # emitted, never arrived


async def arrivals_of(receiver: httpx.AsyncClient, created: dict[str, float]) -> Arrivals:
    first: dict[str, float] = {}
    duplicates = unexpected = 0
    for event_id, received in (await receiver.get("/_arrivals")).json():
        if event_id not in created:
            unexpected += 1
        elif event_id in first:
            duplicates += 1
        else:
            first[event_id] = received
    return Arrivals(
        first=first,
        duplicates=duplicates,
        unexpected=unexpected,
        missing=len(created) - len(first),
    )


async def await_arrivals(receiver: httpx.AsyncClient, count: int) -> None:
    """Until the receiver has `count` arrivals (duplicates count too; checked afterwards), or
    none arrived for STALL_SECONDS."""
    seen, progressed = 0, time.monotonic()
    while (arrived := (await receiver.get("/_count")).json()) < count:
        if arrived > seen:
            seen, progressed = arrived, time.monotonic()
        elif time.monotonic() - progressed > STALL_SECONDS:
            return  # the phase reports what is missing
        await asyncio.sleep(ARRIVAL_POLL_SECONDS)


async def delivery_states(rt: Runtime, endpoint_id: str) -> dict[str, int]:
    deliveries = tables.deliveries
    async with rt.db.engine.connect() as conn:
        rows = await conn.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.endpoint_id == endpoint_id)
            .group_by(deliveries.c.status)
        )
        return {str(status): int(count) for status, count in rows}


async def await_settled(rt: Runtime, endpoint_id: str, count: int) -> dict[str, int]:
    """Delivery states once none is pending (an outcome commits just after its POST)."""
    deadline = time.monotonic() + STALL_SECONDS
    while True:
        states = await delivery_states(rt, endpoint_id)
        if states.get("pending", 0) == 0 and sum(states.values()) >= count:
            return states
        if time.monotonic() > deadline:
            return states
        await asyncio.sleep(ARRIVAL_POLL_SECONDS)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check(arrivals: Arrivals, states: dict[str, int], emitted: int) -> str:
    delivered = states.get("delivered", 0)
    verdict = "ok" if delivered == emitted and arrivals.missing == 0 else "NOT OK"
    return (
        f"{verdict}: {delivered:,} of {emitted:,} delivered in the database {states}, "
        f"{arrivals.missing} missing, {arrivals.duplicates} duplicates, "
        f"{arrivals.unexpected} unexpected at the receiver"
    )


async def throughput(
    rt: Runtime,
    producer: Producer,
    receiver: httpx.AsyncClient,
    *,
    endpoint_id: str,
    events_count: int,
    batch: int,
    start_worker: Callable[[], int],
    profile: Path | None,
) -> None:
    started = time.monotonic()
    await producer.preload(events_count, batch)
    print(
        f"  preloaded {events_count:,} events in {time.monotonic() - started:.1f} s "
        f"({events_count / (time.monotonic() - started):,.0f}/s, {batch} per transaction)"
    )
    spawned = time.time()
    pid = start_worker()
    cpu_before = cpu_seconds(pid)
    with profiled(pid, profile):
        await await_arrivals(receiver, 1)
        # The start (imports, aiogram's load) is no delivery's work: the figure per delivery
        # counts from the first arrival.
        cpu_at_first, arrived_at_first = cpu_seconds(pid), (await receiver.get("/_count")).json()
        await await_arrivals(receiver, events_count)
    cpu_at_last = cpu_seconds(pid)
    cpu = cpu_at_last - cpu_before
    per_delivery = (cpu_at_last - cpu_at_first) / max(1, events_count - arrived_at_first)
    arrivals = await arrivals_of(receiver, producer.created)
    states = await await_settled(rt, endpoint_id, events_count)
    times = sorted(arrivals.first.values())
    if len(times) < 2:
        print(f"  {check(arrivals, states, events_count)}")
        return
    window = times[-1] - times[0]
    print(
        f"  throughput: {(len(times) - 1) / window:,.0f} deliveries/s "
        f"(first to last arrival, {window:.2f} s; {len(times) / (times[-1] - spawned):,.0f}/s "
        f"counting the worker's start, {times[0] - spawned:.2f} s to the first); "
        f"worker CPU {cpu:.1f} s = {cpu / (times[-1] - spawned):.0%} of a core, "
        f"{per_delivery * 1e6:,.0f} µs per delivery after the first"
    )
    print(f"  {check(arrivals, states, events_count)}")
    await receiver.post("/_reset")


async def latency(
    rt: Runtime,
    producer: Producer,
    receiver: httpx.AsyncClient,
    *,
    endpoint_id: str,
    rate: float,
    duration: float,
    warmup: float,
    tick: float,
    worker_pid: int,
) -> None:
    if warmup > 0:
        await producer.steadily(rate, warmup, tick)
        await await_arrivals(receiver, len(producer.created))
        await await_settled(rt, endpoint_id, len(producer.created))
        await receiver.post("/_reset")
    # Only this phase's events are judged; earlier ones are all delivered by now.
    before = set(producer.created)
    before_states = await delivery_states(rt, endpoint_id)
    cpu_before = cpu_seconds(worker_pid)
    took = await producer.steadily(rate, duration, tick)
    measured = {k: v for k, v in producer.created.items() if k not in before}
    await await_arrivals(receiver, len(measured))
    arrivals = await arrivals_of(receiver, measured)
    cpu = cpu_seconds(worker_pid) - cpu_before  # the phase and its tail, settled
    states = await await_settled(rt, endpoint_id, len(producer.created))
    states = {k: v - before_states.get(k, 0) for k, v in states.items()}
    lags = [(arrivals.first[k] - measured[k]) * 1000 for k in arrivals.first]
    if len(lags) < 2:
        print(f"  {check(arrivals, states, len(measured))}")
        return
    percentiles = statistics.quantiles(lags, n=100, method="inclusive")
    print(
        f"  latency at {len(measured) / took:,.0f} events/s for {took:.1f} s "
        f"(asked {rate:g}/s, a transaction every {tick * 1000:g} ms): "
        f"p50 {percentiles[49]:.1f} ms, p90 {percentiles[89]:.1f} ms, "
        f"p99 {percentiles[98]:.1f} ms, max {max(lags):.1f} ms; "
        f"worker CPU {cpu:.1f} s = {cpu / took:.0%} of a core"
    )
    print(f"  {check(arrivals, states, len(measured))}")


async def run(args: argparse.Namespace, env: dict[str, str], workdir: Path, url: str) -> None:
    settings = Settings.model_validate(
        {k.removeprefix("TGRELAY_").lower(): v for k, v in env.items() if k.startswith("TGRELAY_")}
    )
    configure_logging(settings.log_level)
    async with (
        open_runtime(settings) as rt,
        httpx.AsyncClient(base_url=url, timeout=30) as receiver,
    ):
        workspace, _ = await workspaces.create_workspace(rt.db, "bench", now=rt.clock())
        principal = await workspaces.operator(rt.db, workspace.id)
        endpoint = (
            await events.create_endpoint(
                rt, principal, url=url + HOOK_PATH, event_types=None, description="bench"
            )
        ).endpoint
        producer = Producer(rt, workspace.id)
        with contextlib.ExitStack() as stack:
            worker: list[subprocess.Popen[bytes]] = []

            def start_worker() -> int:
                """Start `tgrelay worker` (once; stopped when the stack closes); its pid."""
                if not worker:
                    command = [sys.executable, "-m", "tgrelay", "worker"]
                    worker.append(
                        stack.enter_context(process(command, env, workdir / "worker.log"))
                    )
                return worker[0].pid

            if args.events:
                await throughput(
                    rt,
                    producer,
                    receiver,
                    endpoint_id=endpoint.id,
                    events_count=args.events,
                    batch=args.batch,
                    start_worker=start_worker,
                    profile=args.profile,
                )
            if args.duration:
                pid = start_worker()
                await latency(
                    rt,
                    producer,
                    receiver,
                    endpoint_id=endpoint.id,
                    rate=args.rate,
                    duration=args.duration,
                    warmup=args.warmup,
                    tick=args.tick,
                    worker_pid=pid,
                )


def run_in(args: argparse.Namespace, workdir: Path, database_url: str | None) -> None:
    receiver_port = free_port()
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(workdir / "data"),
        "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TGRELAY_LOG_LEVEL": "WARNING",
        "TGRELAY_HEALTH_INTERVAL_SECONDS": "3600",
        "TGRELAY_WEBHOOKS_ALLOW_PRIVATE": "true",  # the receiver listens on loopback
    }
    if database_url is not None:
        env["TGRELAY_DATABASE_URL"] = database_url
    if args.worker_concurrency is not None:
        env["TGRELAY_WEBHOOKS_CONCURRENCY"] = str(args.worker_concurrency)
    if args.per_endpoint is not None:
        env["TGRELAY_WEBHOOKS_CONCURRENCY_PER_ENDPOINT"] = str(args.per_endpoint)
    url = f"http://127.0.0.1:{receiver_port}"
    receiver = [sys.executable, __file__, "--serve-receiver", str(receiver_port)]
    with process(receiver, env, workdir / "receiver.log"):
        wait_http(f"{url}/_count", timeout=30)
        asyncio.run(run(args, env, workdir, url))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--events", type=int, default=20_000, help="phase 1; 0 skips it")
    parser.add_argument("--batch", type=int, default=500, help="phase 1 events per transaction")
    parser.add_argument("--rate", type=float, default=1000, help="phase 2 events/s")
    parser.add_argument("--duration", type=float, default=10, help="phase 2 seconds; 0 skips it")
    # Longer than an idle lane's slowest look (2 s, lanes/webhooks.WEBHOOK_PACING): the figure is the
    # steady state, not how soon an idle worker finds another process's first event.
    parser.add_argument("--warmup", type=float, default=5, help="phase 2 unmeasured seconds")
    parser.add_argument("--tick", type=float, default=0.01, help="phase 2 seconds per commit")
    parser.add_argument(
        "--worker-concurrency", type=int, help="TGRELAY_WEBHOOKS_CONCURRENCY (default 64)"
    )
    parser.add_argument(
        "--per-endpoint", type=int, help="TGRELAY_WEBHOOKS_CONCURRENCY_PER_ENDPOINT (default 16)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy flame graph of the worker, phase 1")
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver is not None:
        uvloop.run(serve_receiver(args.serve_receiver))
        return
    if args.rate <= 0 or args.tick <= 0 or args.events < 0 or args.batch < 1:
        parser.error("--rate, --tick and --batch must be positive, --events not negative")
    print(
        f"{args.db}: worker concurrency {args.worker_concurrency or 'default'}, "
        f"per endpoint {args.per_endpoint or 'default'} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    with tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp:
        database_url = (
            asyncio.run(recreate_postgres_database(POSTGRES_DATABASE))
            if args.db == "postgres"
            else None
        )
        try:
            run_in(args, Path(tmp), database_url)
        finally:
            if database_url is not None:
                asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))


if __name__ == "__main__":
    main()
