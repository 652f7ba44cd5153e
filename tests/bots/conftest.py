"""Fixtures for bots tests: a real SQLite database, the emulator on loopback, a clock tests move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tgrelay import wiring
from tgrelay.crypto import TokenCipher
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.observability import Metrics
from tgrelay.runtime import Runtime, send_limits
from tgrelay.settings import Settings
from tgrelay.telegram import ratelimit
from tgrelay.telegram.client import TelegramClients
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import Emulator, RetryPolicy
from tgrelay.testing.emulator_server import RunningEmulator, running_emulator

from .bench import (
    GRACE_SECONDS,
    HEALTH_INTERVAL_SECONDS,
    PUBLIC_URL,
    START,
    Bench,
    BenchFactory,
)


@pytest.fixture
async def telegram() -> AsyncIterator[RunningEmulator]:
    # A failed webhook push is retried only after a minute, so getWebhookInfo holds still.
    emulator = Emulator(retry=RetryPolicy(first_delay=60, max_delay=60))
    async with running_emulator(emulator=emulator) as running:
        yield running


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'tgrelay.db'}")
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)
    yield db
    await db.dispose()


@pytest.fixture
async def make_bench(
    telegram: RunningEmulator, database: Database, tmp_path: Path
) -> AsyncIterator[BenchFactory]:
    """Benches sharing one database, emulator, cipher and clock; a public URL means webhooks."""
    opened: list[Bench] = []
    control = httpx.AsyncClient(base_url=telegram.base_url)
    clock = Clock(start=START)
    cipher = TokenCipher([SecretStr(Fernet.generate_key().decode())])

    async def make(
        *,
        public_url: str | None,
        api_url: str | None = None,
        health_interval_seconds: float = HEALTH_INTERVAL_SECONDS,
    ) -> Bench:
        settings = Settings.model_validate(
            {
                "data_dir": tmp_path,
                "telegram_api_url": api_url or telegram.base_url,
                "public_url": public_url,
                "secret_grace_seconds": GRACE_SECONDS,
                "health_interval_seconds": health_interval_seconds,
                # tests.events.watching's endpoint is on loopback (and never called)
                "webhooks_allow_private": True,
            }
        )
        metrics = Metrics()
        rt = wiring.install(
            Runtime(
                settings=settings,
                db=database,
                cipher=cipher,
                telegram=TelegramClients(settings.telegram_api_url, metrics),
                metrics=metrics,
                rate_limiter=ratelimit.InProcessRateLimiter(send_limits(settings)),
                clock=clock,
            )
        )
        bench = Bench(rt=rt, clock=clock, telegram=telegram, control=control)
        opened.append(bench)
        return bench

    yield make
    for bench in opened:
        await bench.rt.telegram.aclose()
    await control.aclose()


@pytest.fixture
async def polling(make_bench: BenchFactory) -> Bench:
    """A bench whose bots use long polling (no public URL)."""
    return await make_bench(public_url=None)


@pytest.fixture
async def webhook(make_bench: BenchFactory) -> Bench:
    """A bench whose bots use webhooks at PUBLIC_URL."""
    return await make_bench(public_url=PUBLIC_URL)
