"""Fixtures for UI tests: tgrelay and the emulator on loopback, Telegram's users through the
emulator's control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Tgrelay, free_port, running_tgrelay, settings_for
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import Telegram


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    port = free_port()
    async with running_tgrelay(
        settings_for(emulator, tmp_path, webhook=True, port=port), port
    ) as relay:
        yield relay


@pytest.fixture
async def telegram(emulator: RunningEmulator) -> AsyncIterator[Telegram]:
    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=10) as client:
        yield Telegram(client)
