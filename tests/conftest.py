"""Shared fixtures: the PostgreSQL server (real, skipped with a reason when absent) and the
Telegram emulator on a loopback port (tests/testing overrides it with the in-process one)."""

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
)
from tgrelay.testing.emulator_server import RunningEmulator, running_emulator


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


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """The Telegram emulator served on a loopback port, for tgrelay to call."""
    async with running_emulator() as running:
        yield running
