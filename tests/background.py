"""A tgrelay and an emulator served from a thread of their own, for synchronous tests.

Hypothesis drives synchronous test functions; this gives them a real server to hit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import SecretStr

from tgrelay.app import TgrelayApp
from tgrelay.bots import service as bots
from tgrelay.runtime import Runtime
from tgrelay.settings import Settings
from tgrelay.testing.emulator_server import running_emulator
from tgrelay.testing.serving import serving
from tgrelay.workspaces import service as workspaces


@dataclass(frozen=True, kw_only=True)
class ServedRelay:
    base_url: str
    bot_id: int
    secret: str  # the webhook secret the bot's intake accepts
    runtime: Runtime
    loop: asyncio.AbstractEventLoop


@contextmanager
def relay_in_thread(data_dir: Path, port: int) -> Iterator[ServedRelay]:
    """tgrelay in webhook mode with one connected bot, running until the block exits."""
    ready: list[ServedRelay] = []
    started = threading.Event()
    failure: list[BaseException] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        stop.append(asyncio.Event())
        async with running_emulator() as emulator:
            settings = Settings(
                data_dir=data_dir,
                telegram_api_url=emulator.base_url,
                public_url=f"http://127.0.0.1:{port}",
                secret_keys=(SecretStr(Fernet.generate_key().decode()),),
            )
            app = TgrelayApp(settings)
            async with serving(app, port=port):
                rt: Runtime = app.api.state.runtime
                workspace, _ = await workspaces.create_workspace(rt.db, "fuzz", now=rt.clock())
                principal = await workspaces.operator(rt.db, workspace.id)
                bot = emulator.emulator.create_bot("fuzz_bot")
                await bots.connect(rt, principal, bot.token)
                credentials = await bots.intake_credentials(rt, bot.id)
                assert credentials is not None
                ready.append(
                    ServedRelay(
                        base_url=f"http://127.0.0.1:{port}",
                        bot_id=bot.id,
                        secret=credentials.secrets[0],
                        runtime=rt,
                        loop=asyncio.get_running_loop(),
                    )
                )
                started.set()
                await stop[0].wait()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=target, name="relay", daemon=True)
    thread.start()
    started.wait(timeout=120)
    if failure or not ready:
        raise RuntimeError("the relay did not start") from (failure[0] if failure else None)
    try:
        yield ready[0]
    finally:
        ready[0].loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=60)
