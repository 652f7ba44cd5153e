"""A running tgrelay (real HTTP on loopback) wired to a running emulator, for end-to-end tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr

from tests.databases import at_head
from tgrelay import crypto
from tgrelay.app import TgrelayApp
from tgrelay.clock import Clock, utcnow
from tgrelay.runtime import Runtime
from tgrelay.settings import Settings
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.serving import serving
from tgrelay.workspaces import service as workspaces


@dataclass(kw_only=True)
class Tgrelay:
    """A tgrelay process-in-a-task and an API client authenticated for one workspace."""

    app: TgrelayApp
    base_url: str
    api: httpx.AsyncClient
    workspace_id: str
    api_key: str

    @property
    def runtime(self) -> Runtime:
        rt = self.app.api.state.runtime
        assert isinstance(rt, Runtime)
        return rt

    async def connect_bot(self, token: str) -> dict[str, Any]:
        response = await self.api.post("/v1/bots", json={"token": token})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def updates(self, bot_id: int, **params: Any) -> list[dict[str, Any]]:
        response = await self.api.get(f"/v1/bots/{bot_id}/updates", params=params)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["updates"]
        return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HeldPort:
    """A port where nothing listens (connections are refused) that no other socket can take
    until `release()`: for a server a test starts late. A port merely found free can be
    taken meanwhile, e.g. as the local port of an outgoing connection (seen once in CI:
    "Address already in use" after a simulated outage)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def release(self) -> None:
        self._sock.close()


def settings_for(
    emulator: RunningEmulator, data_dir: Path, *, webhook: bool, port: int, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "telegram_api_url": emulator.base_url,
        "public_url": f"http://127.0.0.1:{port}" if webhook else None,
        "secret_keys": (SecretStr(Fernet.generate_key().decode()),),
        "poll_timeout_seconds": 1,
        "health_interval_seconds": 3600,
        **overrides,
    }
    return Settings.model_validate(values)


@asynccontextmanager
async def running_tgrelay(
    settings: Settings,
    port: int,
    *,
    clock: Clock = utcnow,
    run_worker: bool = True,
) -> AsyncIterator[Tgrelay]:
    """Serve tgrelay on `port`; without `run_worker`, jobs wait until a test runs a worker."""
    await at_head(settings)
    app = TgrelayApp(settings, clock=clock, run_worker=run_worker)
    async with serving(app, port=port, forwarded_allow_ips=settings.forwarded_allow_ips):
        rt = app.api.state.runtime
        workspace, key = await workspaces.create_workspace(rt.db, "e2e team", now=rt.clock())
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        ) as api:
            yield Tgrelay(
                app=app, base_url=base_url, api=api, workspace_id=workspace.id, api_key=key
            )


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 15.0, interval: float = 0.05
) -> None:
    """Wait until `check` holds; fail with a clear message when it never does."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(interval)


@asynccontextmanager
async def polling_relay(
    emulator: RunningEmulator, tmp_path: Path, clock: Clock
) -> AsyncIterator[Tgrelay]:
    """tgrelay in polling mode on a free port, its time `clock`'s."""
    port = free_port()
    settings = settings_for(emulator, tmp_path, webhook=False, port=port)
    async with running_tgrelay(settings, port, clock=clock) as relay:
        yield relay


def key_id(plaintext: str) -> str:
    """The public part of an API key (its id), as the API lists and revokes it by."""
    parts = crypto.split_api_key(plaintext)
    assert parts is not None, "not an API key"
    return parts[0]
