"""Wiring: build the Runtime from Settings, assemble the ASGI app, run worker and pollers.

The webhook route is served by a lean ASGI handler ahead of FastAPI (see DESIGN.md, "The
intake path is the hot path"); everything else is the FastAPI app with its OpenAPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tgrelay import apidocs, audit_api, problems, security_headers, wiring
from tgrelay.bots import api as bots_api
from tgrelay.bots import jobs as bots_jobs
from tgrelay.clock import Clock, utcnow
from tgrelay.conversations import api as conversations_api
from tgrelay.conversations import handlers as conversations_handlers
from tgrelay.conversations import jobs as conversations_jobs
from tgrelay.conversations import start_api as conversations_start_api
from tgrelay.db import notifications
from tgrelay.events import api as events_api
from tgrelay.events import service as events_service
from tgrelay.events import telemetry as events_telemetry
from tgrelay.groups import api as groups_api
from tgrelay.groups import handlers as groups_handlers
from tgrelay.groups import legacy_sends as groups_legacy_sends
from tgrelay.http import transport as http_transport
from tgrelay.inbox import api as inbox_api
from tgrelay.inbox import jobs as inbox_jobs
from tgrelay.inbox import models as inbox_models
from tgrelay.inbox import rejections as intake_rejections
from tgrelay.inbox.poller import PollerSupervisor
from tgrelay.inbox.receiver import WebhookReceiver
from tgrelay.inbox.rejections import RejectionTally
from tgrelay.inbox.secret_breaker import SecretBreaker
from tgrelay.inbox.sharing import IntakeShare
from tgrelay.inbox.writer import UPDATES_QUEUE, GroupCommitWriter
from tgrelay.lanes import metrics as lanes_metrics
from tgrelay.lanes import webhooks as webhooks_lane
from tgrelay.lanes.parent import LaneProcess
from tgrelay.queue import depth as queue_depth
from tgrelay.queue import pacing
from tgrelay.queue import store as job_store
from tgrelay.queue.models import DEFAULT_QUEUE
from tgrelay.queue.worker import Registry, Worker
from tgrelay.retention import policy as retention_policy
from tgrelay.retention import runner as retention_runner
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.support import api as support_api
from tgrelay.support import desk_api as support_desk_api
from tgrelay.support import gauges as support_gauges
from tgrelay.support import handlers as support_handlers
from tgrelay.support import jobs as support_jobs
from tgrelay.support import kb_answers as support_kb_answers
from tgrelay.support import kb_api as support_kb_api
from tgrelay.support import lifecycle as support_lifecycle
from tgrelay.support import report_api as support_report_api
from tgrelay.support import sla_api as support_sla_api
from tgrelay.support import sla_escalation as support_sla_escalation
from tgrelay.support import sla_replan as support_sla_replan
from tgrelay.telegram import client as telegram_client
from tgrelay.telegram.outbox import jobs as outbox_jobs
from tgrelay.ui import pages as ui_pages
from tgrelay.workspaces import api as workspaces_api

log = structlog.get_logger(__name__)

WEBHOOK_PREFIX = "/telegram/"

# Jobs of the updates queue per claim: a backlog drains in batches of this many, each
# chat's updates in turn, committed every DEFAULT_BATCH_SECONDS (queue/worker.py).
UPDATES_BATCH_SIZE = 100
# Batches in flight on PostgreSQL: one waits on its round trips most of the time, and
# claims give each batch chats no other holds; one while the intake bursts (IntakeShare).
# SQLite writes one transaction at a time.
UPDATES_CONCURRENCY_POSTGRES = 4


def updates_registry(rt: Runtime) -> Registry:
    """The updates queue: process_update, run in batches by a worker of its own."""
    registry = Registry()
    inbox_jobs.register(registry, rt, handlers=update_handlers(rt))
    return registry


def update_handlers(rt: Runtime) -> list[inbox_models.Handler]:
    """The domain handlers of updates, in the order dispatch runs them: groups →
    conversations → support (DESIGN.md); later issues add theirs here."""
    return [
        groups_handlers.handler(rt),
        conversations_handlers.handler(rt),
        support_handlers.handler(rt),
    ]


def job_registry(rt: Runtime) -> Registry:
    """The default queue: Telegram sends (the outbox) and bot checks."""
    registry = Registry()
    bots_jobs.register(registry, rt)
    outbox_jobs.register(registry, rt, wiring.outbox(rt))
    groups_legacy_sends.register(registry, rt)
    support_jobs.register(registry, rt, support_lifecycle.close_if_still_resolved)
    support_kb_answers.register(registry, rt)
    support_sla_escalation.register(registry, rt)
    support_sla_replan.register(registry, rt)
    conversations_jobs.register_timer(registry, rt)
    return registry


@dataclass(kw_only=True)
class Background:
    """What runs beside the HTTP app: the intake writer, and optionally worker and pollers."""

    writer: GroupCommitWriter
    rejections: RejectionTally  # refused webhook requests, flushed as tallied audit rows
    breaker: SecretBreaker  # rotates the secret of a bot flooded with forged requests
    worker: Worker | None
    updates_worker: Worker | None
    webhook_worker: Worker | None  # the webhooks queue's, when it runs in this process
    lane: LaneProcess | None  # or its child process, under `tgrelay serve`


@asynccontextmanager
async def background(
    rt: Runtime,
    *,
    run_worker: bool,
    run_pollers: bool,
    lane_process: bool = False,
    after_start_up: Callable[[], None] | None = None,
) -> AsyncIterator[Background]:
    """Start the process's background tasks; on exit stop them, finishing in-flight work.

    With `lane_process`, the webhooks queue's worker runs in a child process (lanes/) rather
    than here: `tgrelay serve` asks for it; tests that move the clock keep it in process.
    `after_start_up` is called once start-up has made all it keeps, aiogram's import last.
    """
    settings = rt.settings
    writer = GroupCommitWriter(rt)
    tasks = [asyncio.create_task(writer.run(), name="intake-writer")]
    rejections = RejectionTally()
    flusher = asyncio.create_task(
        intake_rejections.flush_periodically(rejections, writer.record_audits),
        name="rejections-flush",
    )
    breaker = SecretBreaker(rt)
    # HTTP and the webhook lane start now; what talks to Telegram waits for aiogram, which
    # loads in a thread meanwhile (about a second of CPU: see telegram_client.load).
    telegram_loaded = asyncio.create_task(_load_telegram(after_start_up), name="load-aiogram")
    tasks.append(telegram_loaded)
    worker: Worker | None = None
    updates_worker: Worker | None = None
    webhook_worker: Worker | None = None
    lane: LaneProcess | None = None
    pollers: PollerSupervisor | None = None
    client: http_transport.Client | None = None  # only workers send webhooks
    listener: notifications.Listener | None = None
    if run_worker:
        webhooks: Worker | LaneProcess
        if lane_process:
            webhooks = lane = LaneProcess(
                settings,
                expected=lambda: events_service.deliveries_expected(rt),
                on_wake=lambda queue: rt.notify_queue(queue),
                look_seconds=webhooks_lane.WEBHOOK_PACING.idle_seconds,
            )
        else:
            client = webhooks_lane.client(rt)
            webhooks = webhook_worker = webhooks_lane.worker(rt, client)
        worker = Worker(
            rt.db,
            job_registry(rt),
            concurrency=settings.worker_concurrency,
            lease_seconds=settings.job_lease_seconds,
            clock=rt.clock,
            metrics=rt.metrics,
        )
        share = IntakeShare(writer)  # the updates worker's turns beside the intake
        batches = 1 if rt.db.is_sqlite else UPDATES_CONCURRENCY_POSTGRES
        updates_worker = Worker(
            rt.db,
            updates_registry(rt),
            lease_seconds=settings.job_lease_seconds,
            clock=rt.clock,
            metrics=rt.metrics,
            queue=UPDATES_QUEUE,
            concurrency=batches,
            concurrency_now=None if batches == 1 else lambda: share.batches(batches),
            batch_size=UPDATES_BATCH_SIZE,
            batch_seconds=share.transaction_seconds,
            between_transactions=share.pause,
        )
        # Each queue's worker is woken by what enqueues for it alone: a wake costs a claim,
        # a write transaction, and the intake enqueues many times a second.
        lanes: dict[str, Worker | LaneProcess] = {
            UPDATES_QUEUE: updates_worker,
            DEFAULT_QUEUE: worker,
            events_service.WEBHOOKS_QUEUE: webhooks,
        }
        rt.notify_queue = _notify_queue(lanes)
        if rt.db.is_postgres:  # jobs written by other processes wake these lanes too
            listener = _listener(rt, lanes)
            tasks.append(asyncio.create_task(listener.run(), name="job-notifications"))
        for name, each in (("updates-worker", updates_worker), ("worker", worker)):
            tasks.append(asyncio.create_task(_after(telegram_loaded, each.run), name=name))
        if lane is not None:
            tasks.append(asyncio.create_task(lane.run(), name="webhooks-lane"))
        else:
            assert webhook_worker is not None
            tasks.append(asyncio.create_task(webhook_worker.run(), name="webhook-worker"))
        tasks.append(
            asyncio.create_task(bots_jobs.health_scheduler(rt).run(), name="health-checks")
        )
        retention = retention_policy.from_settings(settings)
        if retention.prunes_anything:  # every worker process starts one; the lease picks one
            pruner = retention_runner.Pruner(
                rt.db,
                retention,
                clock=rt.clock,
                sleep=asyncio.sleep,
                interval_seconds=settings.retention_interval_seconds,
            )
            tasks.append(asyncio.create_task(pruner.run(), name="retention"))
    if run_pollers:
        pollers = PollerSupervisor(rt, writer)
        tasks.append(asyncio.create_task(_after(telegram_loaded, pollers.run), name="pollers"))
    try:
        yield Background(
            writer=writer,
            rejections=rejections,
            breaker=breaker,
            worker=worker,
            updates_worker=updates_worker,
            webhook_worker=webhook_worker,
            lane=lane,
        )
    finally:
        # Pollers first (no new updates), then the workers (finish or release), then the writer.
        if listener is not None:
            await listener.stop()
        if pollers is not None:
            await pollers.stop()
        if updates_worker is not None:
            await updates_worker.stop()
        if worker is not None:
            await worker.stop()
        if webhook_worker is not None:
            await webhook_worker.stop()
        if lane is not None:
            await lane.stop()
        if client is not None:
            await client.aclose()
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await breaker.close()
        writer.record_audits(rejections.drain())  # what was counted since the last flush
        await writer.stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _load_telegram(then: Callable[[], None] | None) -> None:
    await telegram_client.load()
    if then is not None:
        then()


async def _after(ready: asyncio.Task[None], run: Callable[[], Awaitable[None]]) -> None:
    await asyncio.shield(ready)  # one waiter's cancellation must not cancel the others' load
    await run()


def _listener(rt: Runtime, lanes: Mapping[str, Worker | LaneProcess]) -> notifications.Listener:
    """Wakes this process's lanes for jobs other processes wrote (PostgreSQL NOTIFY). While it
    listens, the workers here look for jobs seldom (pacing.listening); when it connects or
    stops, each is woken, to look for what came meanwhile and to take its new pacing. Not
    serve's lane child: a wake would start it with nothing to deliver, and its parent's
    look every 2 s (`deliveries_expected`) finds what it missed."""
    own = {each: each.pacing for each in lanes.values() if isinstance(each, Worker)}

    def on_listening(listening: bool) -> None:
        for each, usual in own.items():
            each.pacing = pacing.listening(usual) if listening else usual
            each.notify()

    return notifications.Listener(
        notifications.connector(rt.db.engine),
        on_queue=lambda queue: rt.notify_queue(queue),
        on_listening=on_listening,
    )


class _Wakeable(Protocol):
    def notify(self) -> None: ...


def _notify_queue(workers: Mapping[str, _Wakeable]) -> Callable[[str], None]:
    def notify(queue: str) -> None:
        worker = workers.get(queue)
        if worker is not None:
            worker.notify()

    return notify


class TgrelayApp:
    """The ASGI entry point: webhook intake first, the FastAPI app for everything else."""

    def __init__(
        self,
        settings: Settings,
        *,
        run_worker: bool = True,
        run_pollers: bool | None = None,
        clock: Clock = utcnow,
        on_started: Callable[[Runtime], Awaitable[None]] | None = None,
        lane_process: bool = False,
        after_start_up: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.run_worker = run_worker
        # The webhooks lane in a child process (`tgrelay serve`); in process otherwise.
        self.lane_process = lane_process
        # Pollers go with the worker unless told otherwise: `serve --no-worker` is a pure
        # API/intake node, and `tgrelay worker` polls.
        self.run_pollers = run_worker if run_pollers is None else run_pollers
        self.receiver: WebhookReceiver | None = None
        # Called once the app is ready to serve (`tgrelay serve` prints its banner).
        self.on_started = on_started
        self.after_start_up = after_start_up  # see background()
        self.api = self._build_api()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        receiver = self.receiver
        if (
            receiver is not None
            and scope["type"] == "http"
            and scope["path"].startswith(WEBHOOK_PREFIX)
        ):
            await receiver(scope, receive, send)
            return
        await self.api(scope, receive, send)

    def _build_api(self) -> FastAPI:
        api = FastAPI(
            title="tgrelay",
            version="0.1.0",
            summary="Telegram bots and groups, wired into your product without losing an update.",
            lifespan=self._lifespan,
            docs_url=None,  # apidocs serves /docs and /redoc from packaged files, not a CDN
            redoc_url=None,
        )
        api.add_middleware(security_headers.SecurityHeaders)
        apidocs.install(api)
        problems.install(api)
        api.include_router(bots_api.router)
        api.include_router(inbox_api.router)
        ui_pages.install(api)  # web UI: pages, static files, sign-in redirect
        api.include_router(groups_api.router)
        api.include_router(events_api.router)
        api.include_router(audit_api.router)
        api.include_router(workspaces_api.router)
        api.include_router(support_desk_api.router)
        api.include_router(support_api.router)
        api.include_router(support_kb_api.router)
        api.include_router(support_sla_api.router)
        api.include_router(support_report_api.router)
        api.include_router(conversations_api.router)
        api.include_router(conversations_start_api.router)

        @api.get("/healthz", tags=["operations"])
        async def healthz() -> dict[str, str]:
            """Liveness: the process answers."""
            return {"status": "ok"}

        @api.get("/readyz", tags=["operations"])
        async def readyz(request: Request) -> JSONResponse:
            """Readiness: the database answers."""
            rt: Runtime | None = getattr(request.app.state, "runtime", None)
            ready = rt is not None and await rt.db.ping()
            return JSONResponse(
                {"status": "ready" if ready else "unavailable"}, status_code=200 if ready else 503
            )

        @api.get("/metrics", tags=["operations"], include_in_schema=False)
        async def metrics(request: Request) -> Response:
            rt: Runtime = request.app.state.runtime
            if not _metrics_allowed(rt.settings, request.headers.get("authorization")):
                return problems.problem(
                    401, "Unauthorized", "/metrics needs Authorization: Bearer <metrics token>"
                )
            async with rt.db.engine.connect() as conn:
                counts = await job_store.count_by_state(conn)
                depths = await queue_depth.by_kind(conn, now=rt.clock())
                await events_telemetry.refresh_breakers_open(conn, rt)
                support_figures = await support_gauges.read(conn)
            for state, count in counts.items():
                rt.metrics.jobs.labels(state.value).set(count)
            queue_depth.publish(rt.metrics, depths)
            support_gauges.publish(rt.metrics, support_figures)
            lane: LaneProcess | None = getattr(request.app.state, "lane", None)
            lane_families = [] if lane is None else await lane.samples()
            exposed = lanes_metrics.Merged(rt.metrics.registry, lane_families)
            return Response(generate_latest(exposed), media_type=CONTENT_TYPE_LATEST)

        return api

    @asynccontextmanager
    async def _lifespan(self, api: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(self.settings, clock=self.clock) as rt:
            wiring.install(rt)
            _warn_about_settings(rt)
            async with background(
                rt,
                run_worker=self.run_worker,
                run_pollers=self.run_pollers,
                lane_process=self.lane_process,
                after_start_up=self.after_start_up,
            ) as bg:
                api.state.runtime = rt
                api.state.lane = bg.lane
                self.receiver = WebhookReceiver(
                    rt, bg.writer, rejections=bg.rejections, breaker=bg.breaker
                )
                log.info(
                    "app.started",
                    database=rt.db.dialect,
                    mode="webhook" if rt.settings.uses_webhooks else "polling",
                    worker=self.run_worker,
                )
                if self.on_started is not None:
                    await self.on_started(rt)
                try:
                    yield
                finally:
                    self.receiver = None
        log.info("app.stopped")


def _metrics_allowed(settings: Settings, authorization: str | None) -> bool:
    """Open without TGRELAY_METRICS_TOKEN; with it, only its bearer (compared in constant time)."""
    if settings.metrics_token is None:
        return True
    expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
    return hmac.compare_digest((authorization or "").encode(), expected)


def _warn_about_settings(rt: Runtime) -> None:
    if rt.settings.public_url_is_insecure:
        log.warning(
            "settings.insecure_public_url",
            public_url=rt.settings.public_url,
            note="Telegram only delivers webhooks to https:// URLs; http:// suits the emulator",
        )


async def run_worker_process(
    settings: Settings, *, after_start_up: Callable[[], None] | None = None
) -> None:
    """`tgrelay worker`: jobs, health checks and pollers without HTTP, until SIGINT/SIGTERM.
    `after_start_up`: as background()'s."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with (
        open_runtime(settings) as rt,
        background(
            wiring.install(rt), run_worker=True, run_pollers=True, after_start_up=after_start_up
        ),
    ):
        log.info("worker.started", database=rt.db.dialect)
        await stop.wait()
    log.info("worker.stopped")
