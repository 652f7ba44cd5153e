"""Shared fixtures: the PostgreSQL server (real, skipped with a reason when absent), a
migrated database to copy, and the Telegram emulator on a loopback port (tests/testing
overrides it with the in-process one)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from tests.databases import (
    DEFAULT_POSTGRES_URL,
    POSTGRES_URL_VARIABLE,
    PostgresServer,
    administer,
    migrated_template,
)
from tgrelay.telegram import aiogram_loading
from tgrelay.testing.emulator_server import RunningEmulator, running_emulator


@pytest.fixture(scope="session", autouse=True)
def _no_tls_grace_over_plain_http() -> Iterator[None]:
    """aiogram's session sleeps 250 ms on close so that TLS connections wind down; the tests'
    Bot API (the emulator) is plain HTTP on loopback, where there is none. Hundreds of tests
    close a runtime (about a minute a run): over http:// they close at once, as aiohttp
    itself does; an https:// session still gets aiogram's wait."""
    aiogram_loading.import_aiogram()  # as tgrelay imports it, before anything else does
    from aiogram.client.session.aiohttp import AiohttpSession

    tls_close = AiohttpSession.close

    async def close(self: AiohttpSession) -> None:
        if self.api.base.startswith("https:"):
            await tls_close(self)
            return
        session = self._session
        if session is not None and not session.closed:
            await session.close()
            await asyncio.sleep(0)  # aiohttp closes its transports on the next iteration

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AiohttpSession, "close", close)
        yield


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The PostgreSQL server of TGRELAY_TEST_POSTGRES_URL, or the local one on 127.0.0.1:5432."""
    configured = os.environ.get(POSTGRES_URL_VARIABLE)
    server = make_url(configured or DEFAULT_POSTGRES_URL)
    try:
        asyncio.run(administer(server, "SELECT 1"))
    except (OSError, DBAPIError, TimeoutError) as exc:
        if configured:  # asked for explicitly: an unreachable server is a failure, not a skip
            raise
        reason = (
            f"PostgreSQL not reachable at {server.render_as_string(hide_password=True)} "
            f"({type(exc).__name__}); set {POSTGRES_URL_VARIABLE}"
        )
        yield PostgresServer(server=server, reachable=False, skip_reason=reason)
        return
    yield PostgresServer(server=server, reachable=True, skip_reason="")


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresServer) -> Iterator[str | None]:
    """A database at HEAD that tests copy (`postgres.fresh_database(template=...)`) instead of
    migrating one each; None without a server."""
    yield from migrated_template(postgres)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """The Telegram emulator served on a loopback port, for tgrelay to call."""
    async with running_emulator() as running:
        yield running
