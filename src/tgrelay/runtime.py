"""The resources one process shares, built from Settings and handed to every layer.

FastAPI routes reach it through the `runtime` dependency; nothing keeps it in a global.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import Request

from tgrelay import breaker, tracing
from tgrelay.clock import Clock, utcnow
from tgrelay.crypto import TokenCipher
from tgrelay.db import migrate
from tgrelay.db.engine import Database
from tgrelay.hooks import Hooks
from tgrelay.observability import Metrics
from tgrelay.settings import Settings, with_secret_keys
from tgrelay.telegram import ratelimit
from tgrelay.telegram.client import TelegramClients


@dataclass(kw_only=True)
class Runtime:
    settings: Settings
    db: Database
    cipher: TokenCipher
    telegram: TelegramClients
    metrics: Metrics
    # Where spans go (tracing.NO_TRACER unless TGRELAY_OTEL_ENDPOINT is set).
    tracer: tracing.Tracer = tracing.NO_TRACER
    # Outgoing Bot API sends ask it for a slot (Redis-shared when TGRELAY_REDIS_URL is set).
    rate_limiter: ratelimit.RateLimiter
    clock: Clock = utcnow
    # Called with a queue's name after jobs of it are enqueued, so that this process's worker
    # of that queue wakes at once (no-op where none runs).
    notify_queue: Callable[[str], None] = field(default=lambda queue: None)
    # Listeners a lower domain calls to tell a higher one (tgrelay.wiring adds them).
    hooks: Hooks = field(default_factory=Hooks)


@asynccontextmanager
async def open_runtime(settings: Settings, *, clock: Clock = utcnow) -> AsyncIterator[Runtime]:
    """Migrate the database, open every shared resource, and close them all on exit."""
    settings = with_secret_keys(settings)
    # First: a missing `otel` extra stops the start before anything is opened.
    tracer = tracing.tracer_for(settings.otel_endpoint)
    # Creates the SQLite file's directory.
    db = Database(
        settings.resolved_database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        postgres_pool_size=settings.resolved_database_pool_size,
    )
    await migrate.upgrade_if_behind(db)
    metrics = Metrics()
    if db.is_sqlite:
        lock = metrics.sqlite_write_lock
        db.on_write_lock_held = lambda writer, seconds: lock.labels(writer).observe(seconds)
    rt = Runtime(
        settings=settings,
        db=db,
        cipher=TokenCipher(settings.secret_keys),
        telegram=TelegramClients(
            settings.telegram_api_url,
            metrics,
            breaker_policy=breaker.BreakerPolicy(
                failure_threshold=settings.telegram_breaker_failures,
                open_seconds=settings.telegram_breaker_open_seconds,
            ),
            clock=clock,
            tracer=tracer,
        ),
        metrics=metrics,
        tracer=tracer,
        rate_limiter=ratelimit.rate_limiter(settings.redis_url, send_limits(settings)),
        clock=clock,
    )
    try:
        yield rt
    finally:
        await rt.rate_limiter.close()
        await rt.telegram.aclose()
        await rt.db.dispose()
        tracer.shutdown()


def send_limits(settings: Settings) -> ratelimit.Limits:
    def rate(pair: tuple[int, float]) -> ratelimit.Rate:
        return ratelimit.Rate(count=pair[0], per_seconds=pair[1])

    return ratelimit.Limits(
        per_bot=rate(settings.send_limit_per_bot),
        per_chat=rate(settings.send_limit_per_chat),
        per_group=rate(settings.send_limit_per_group),
        safety=settings.send_limit_safety,
    )


def runtime(request: Request) -> Runtime:
    """FastAPI dependency: the Runtime the app's lifespan built."""
    found = request.app.state.runtime
    assert isinstance(found, Runtime)
    return found
