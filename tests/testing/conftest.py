"""Shared pieces for the emulator's tests: an in-process emulator, its clients, fixtures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import BotRecord, Emulator, RetryPolicy
from tgrelay.testing.emulator_server import RunningEmulator, running_emulator

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"
# The emulator fixture's standing clock: the fixtures' last_error_date.
START = datetime(2025, 11, 21, 4, 48, 20, tzinfo=UTC)
NOW = int(START.timestamp())  # 1763700500, as Telegram's dates count

ALICE: dict[str, Any] = {
    "id": 5551234,
    "is_bot": False,
    "first_name": "Alice",
    "username": "alice",
    "language_code": "en",
}
BOB: dict[str, Any] = {"id": 5559876, "is_bot": False, "first_name": "Bob", "username": "bob_ops"}
OPS_GROUP: dict[str, Any] = {"id": -4012345678, "title": "Ops Alerts", "type": "group"}
# Ids the fixtures use: the bot, the Ops Alerts supergroup, the Support Desk forum.
FIXTURE_BOT_ID = 7000000001
OPS_SUPERGROUP_ID = -1002345678901
SUPPORT_DESK_ID = -1003456789012
# Fast retries so failure tests take milliseconds.
FAST_RETRY = RetryPolicy(first_delay=0.01, max_delay=0.05)


def load_fixture(name: str) -> dict[str, Any]:
    """A Telegram payload from tests/fixtures/telegram/ by file stem."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def swap(value: Any, replacements: dict[int, int]) -> Any:
    """A fixture with some integers (ids, dates) replaced wherever they appear."""
    if isinstance(value, dict):
        return {key: swap(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [swap(item, replacements) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return replacements.get(value, value)
    return value


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # A standing clock keeps dates exact.
    clock = Clock(start=START)
    async with Emulator(clock=clock, retry=FAST_RETRY, webhook_timeout=2.0, seed=7) as emulator:
        yield emulator


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client that talks to the in-process emulator without a socket."""
    transport = httpx.ASGITransport(app=emulator)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        yield client


@pytest.fixture
def bot(emulator: Emulator) -> BotRecord:
    return emulator.create_bot("relay_alerts_bot", first_name="Relay")


@pytest.fixture
async def running() -> AsyncIterator[RunningEmulator]:
    emulator = Emulator(retry=FAST_RETRY, webhook_timeout=2.0, clock=Clock())
    async with running_emulator(emulator=emulator) as running:
        yield running


async def call(
    client: httpx.AsyncClient, bot: BotRecord, method: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    """A Bot API call through the emulator's HTTP API: its status code and JSON body."""
    response = await client.post(f"/bot{bot.token}/{method}", json=params)
    body: dict[str, Any] = response.json()
    return response.status_code, body


def bad_request(description: str) -> tuple[int, dict[str, Any]]:
    """Telegram's answer to a request it refuses as a bad request."""
    return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}
