"""Serve an ASGI app with uvicorn on a loopback port inside the current event loop.

For tests: the emulator, tgrelay's own app and little webhook receivers all run this way,
so the whole system speaks real HTTP without a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

# How long uvicorn lets in-flight requests finish at shutdown before cancelling them.
GRACEFUL_SHUTDOWN_SECONDS = 2


@dataclass(frozen=True, kw_only=True)
class Served:
    """Where a served app listens."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class _EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves signals to the process's owner (pytest, the app) and stops at once
    when asked, instead of on its next 0.1 s tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        # on_tick refreshes the Date header once a second and reports should_exit.
        while not await self.on_tick(counter):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.1)
            counter = (counter + 1) % 864000


@contextlib.asynccontextmanager
async def serving(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: Literal["auto", "on", "off"] = "auto",
    before_shutdown: Callable[[], Awaitable[None]] | None = None,
    forwarded_allow_ips: str | None = None,
) -> AsyncIterator[Served]:
    """Serve `app` until the block ends; port 0 picks a free port (see `Served.port`).

    `before_shutdown` runs before the server stops, e.g. to end long-running requests.
    `forwarded_allow_ips` trusts those proxies' X-Forwarded-For, as `tgrelay serve` does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_config=None,
        ws="none",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"serving-{host}-{port}")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.005)
        yield Served(host=host, port=sock.getsockname()[1])
    finally:
        try:
            if before_shutdown is not None:
                await before_shutdown()
        finally:
            server.stop()
            await task
            sock.close()
