"""Fixtures for UI tests: tgrelay and the emulator on loopback, Telegram's users through the
emulator's control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect

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


CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (Playwright drives Debian's)",
)
# Browser steps wait on the worker, the emulator's pushes or a receiver, not only on the page.
STEP_TIMEOUT_MS = 15_000
# `expect` polls with the same deadline (its own default is 5 s): ReDoc rendering the whole API
# on a slow hour of the shared machine took longer than that, and CI failed on it.
expect.set_options(timeout=STEP_TIMEOUT_MS)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh page of headless Debian Chromium, driven by Playwright."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            context = await browser.new_context()
            context.set_default_timeout(STEP_TIMEOUT_MS)
            yield await context.new_page()
        finally:
            await browser.close()
