"""No bot token reaches the logs: not through structlog, aiogram, aiohttp or httpx."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tgrelay import crypto, errors
from tgrelay.bots import service as bots
from tgrelay.observability import THIRD_PARTY_LOGGERS, configure_logging
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.emulator_server import running_emulator
from tgrelay.workspaces import service as workspaces


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Route every log line, at DEBUG, into a buffer; restore logging afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, structlog.get_config())
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        structlog.configure(**saved[2])


async def test_no_token_in_logs(captured_logs: io.StringIO, tmp_path: Path) -> None:
    """A connect, a revocation, failing calls and library log lines carry fingerprints, never tokens."""
    async with running_emulator() as emulator:
        bot = emulator.emulator.create_bot("secretive_bot")
        settings = Settings(
            data_dir=tmp_path,
            telegram_api_url=emulator.base_url,
            secret_keys=(SecretStr(Fernet.generate_key().decode()),),
        )
        async with open_runtime(settings) as rt:
            workspace, _ = await workspaces.create_workspace(rt.db, "logs", now=rt.clock())
            principal = await workspaces.operator(rt.db, workspace.id)
            await bots.connect(rt, principal, bot.token)
            emulator.emulator.revoke(bot.id)
            await bots.check_health(rt, bot.id)
            with pytest.raises(errors.TelegramUnauthorized):
                await rt.telegram.for_token(bot.token).get_me()
            # What the libraries would print if they logged a request URL or failed on one.
            url = f"{emulator.base_url}/bot{bot.token}/getMe"
            for name in THIRD_PARTY_LOGGERS:
                logging.getLogger(name).warning("HTTP Request: POST %s", url)
            try:
                raise RuntimeError(f"request to {url} failed")
            except RuntimeError:
                logging.getLogger("aiohttp.client").exception("unexpected error")
                structlog.get_logger("tgrelay.test").exception("call.failed", url=url)
            structlog.get_logger("tgrelay.test").info(
                "call", token=bot.token, nested={"t": bot.token}
            )

    output = captured_logs.getvalue()
    secret_part = bot.token.split(":", 1)[1]
    assert secret_part not in output
    assert output.count(crypto.token_fingerprint(bot.token)) >= len(THIRD_PARTY_LOGGERS) + 3
    assert "bot.connected" in output
