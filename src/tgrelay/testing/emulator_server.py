"""Serving the emulator on a real port: inside a test's event loop, or as a blocking command."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from tgrelay.testing import serving
from tgrelay.testing.emulator import Emulator

if TYPE_CHECKING:
    from aiogram.client.telegram import TelegramAPIServer


@dataclass(frozen=True, kw_only=True)
class RunningEmulator:
    """An emulator listening on `host:port`."""

    emulator: Emulator
    host: str
    port: int

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`: what stands in for `https://api.telegram.org`."""
        return serving.Served(host=self.host, port=self.port).base_url

    @property
    def api_server(self) -> TelegramAPIServer:
        """aiogram's server description: `AiohttpSession(api=running.api_server)`."""
        # Imported here: aiogram takes seconds to import and the emulator itself needs none of it.
        from aiogram.client.telegram import TelegramAPIServer

        return TelegramAPIServer.from_base(self.base_url)


@contextlib.asynccontextmanager
async def running_emulator(
    host: str = "127.0.0.1", port: int = 0, *, emulator: Emulator | None = None
) -> AsyncIterator[RunningEmulator]:
    """Serve an emulator (a new one unless given) in the current event loop; port 0 picks one.

    On exit the emulator is closed (pushes stopped, long polls answered) and the server stops.
    """
    emulator = emulator if emulator is not None else Emulator()
    async with serving.serving(
        emulator, host=host, port=port, lifespan="on", before_shutdown=emulator.aclose
    ) as served:
        yield RunningEmulator(emulator=emulator, host=served.host, port=served.port)


def run(host: str, port: int, *, emulator: Emulator | None = None) -> None:
    """Serve the emulator until interrupted (`tgrelay emulator --port N`)."""
    config = uvicorn.Config(
        emulator if emulator is not None else Emulator(),
        host=host,
        port=port,
        lifespan="on",
        timeout_graceful_shutdown=serving.GRACEFUL_SHUTDOWN_SECONDS,
    )
    # After Config: it configures uvicorn's loggers.
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    uvicorn.Server(config).run()


_TOKEN_IN_PATH = re.compile(r"(/bot\d+)(?::|%3A)[A-Za-z0-9_-]+", re.IGNORECASE)


class RedactTokens(logging.Filter):
    """Access-log lines show `/bot123:…/getMe`: tokens stay out of logs, even emulated ones."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_PATH.sub(r"\1:…", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True
