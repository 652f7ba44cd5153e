"""Benchmark group alerts: how close tgrelay's sends come to Telegram's limits, without a 429.

Runs the emulator and tgrelay (webhook mode, worker included) in this process on loopback,
with the SAME send limits on both sides, connects a bot, links M groups in two phases
(private `/start <token>`, then adding the bot to the group), and POSTs N alerts round-robin
over the M connections. Measures from the first POST until the emulator holds all N alerts,
and compares the achieved rate with the most the limits allow:
min(per_bot, M x min(per_chat, per_group)). Not part of the test suite.

    uv run python bench/alerts.py                                  # 300 alerts, 10 groups
    uv run python bench/alerts.py --alerts 600 --groups 5 --db postgres
    uv run python bench/alerts.py --per-chat 1/1 --per-group 20/60 --per-bot 30/1  # Telegram's

The default limits are Telegram's scaled down so a run takes seconds. tgrelay spaces sends
with GCRA at a burst of one (each interval stretched by `send_limit_safety`, 3 %), so a short
run measures the steady rate; the first send on each key is free, which a long run amortises.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tgrelay import observability
from tgrelay.app import TgrelayApp
from tgrelay.settings import Settings, async_database_url
from tgrelay.testing.emulator import flood
from tgrelay.testing.emulator_server import RunningEmulator, running_emulator
from tgrelay.testing.serving import serving
from tgrelay.workspaces import service as workspaces

POSTGRES_SERVER = os.environ.get(
    "TGRELAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"
)
POSTGRES_DATABASE = "tgrelay_bench_alerts"
USER = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
# How long linking a group, or the last alert's arrival, may take before the run gives up.
STEP_TIMEOUT_SECONDS = 30.0
RUN_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True, kw_only=True)
class Limit:
    """At most `count` sends in any `seconds`, as given on the command line (`COUNT/SECONDS`)."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"


@dataclass(frozen=True, kw_only=True)
class Result:
    elapsed: float
    posting: float  # of which the N POSTs took this long
    rejected: int  # 429s the emulator answered during the run
    in_order: bool  # every group got exactly its alerts, in the order they were posted


def limit(value: str) -> Limit:
    count, _, seconds = value.partition("/")
    try:
        parsed = Limit(count=int(count), seconds=float(seconds))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COUNT/SECONDS, got {value!r}") from None
    if parsed.count < 1 or not parsed.seconds > 0:
        raise argparse.ArgumentTypeError("a limit needs COUNT >= 1 and SECONDS > 0")
    return parsed


def allowed_rate(groups: int, per_chat: Limit, per_group: Limit, per_bot: Limit) -> float:
    """Alerts/s the limits allow over `groups` supergroups, all sent by one bot."""
    return min(per_bot.rate, groups * min(per_chat.rate, per_group.rate))


def sent_to(emulator: RunningEmulator, chat_ids: list[int]) -> int:
    """Messages the emulator accepted in these chats so far."""
    sent = emulator.emulator.flood_report()["sent_by_chat"]
    return sum(sent.get(str(chat_id), 0) for chat_id in chat_ids)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = STEP_TIMEOUT_SECONDS
) -> None:
    """Poll the async `check` until it holds; exit with `what` when it never does."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 - the state polled has no event to wait on
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise SystemExit(f"timed out after {timeout:g}s waiting for {what}") from None


async def recreate_postgres_database(name: str, *, drop_only: bool = False) -> str:
    admin = create_async_engine(
        async_database_url(f"{POSTGRES_SERVER}/postgres"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop_only:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return f"{POSTGRES_SERVER}/{name}"


async def link_group(
    api: httpx.AsyncClient, emulator: RunningEmulator, bot_id: int, index: int
) -> dict[str, Any]:
    """Both phases of linking a new supergroup; the connection once tgrelay confirms it."""
    created = await api.post("/v1/connect-sessions", json={"bot_id": bot_id})
    created.raise_for_status()
    session_id = created.json()["id"]

    async def state() -> dict[str, Any]:
        found = await api.get(f"/v1/connect-sessions/{session_id}")
        found.raise_for_status()
        body: dict[str, Any] = found.json()
        return body

    emulator.emulator.send_message(bot_id, USER, None, f"/start {created.json()['token']}")

    async def verified() -> bool:
        return bool((await state())["state"] == "waiting_group")

    await until(verified, f"group {index}'s private /start")
    chat = emulator.emulator.create_chat("supergroup", f"Bench {index}")
    emulator.emulator.add_bot(chat["id"], bot_id, by=USER)

    async def connected() -> bool:
        return bool((await state())["state"] == "connected")

    await until(connected, f"group {index}'s connection")
    connection: dict[str, Any] = (await state())["connection"]
    return connection


async def run(
    *, alerts: int, groups: int, per_chat: Limit, per_group: Limit, per_bot: Limit, db: str
) -> Result:
    with tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp:
        database_url = (
            await recreate_postgres_database(POSTGRES_DATABASE) if db == "postgres" else None
        )
        try:
            return await run_in(
                Path(tmp),
                database_url,
                alerts=alerts,
                groups=groups,
                per_chat=per_chat,
                per_group=per_group,
                per_bot=per_bot,
            )
        finally:
            if database_url is not None:
                await recreate_postgres_database(POSTGRES_DATABASE, drop_only=True)


async def run_in(
    data_dir: Path,
    database_url: str | None,
    *,
    alerts: int,
    groups: int,
    per_chat: Limit,
    per_group: Limit,
    per_bot: Limit,
) -> Result:
    port = free_port()
    async with running_emulator() as emulator:
        settings = Settings.model_validate(
            {
                "data_dir": data_dir,
                "database_url": database_url,
                "telegram_api_url": emulator.base_url,
                "public_url": f"http://127.0.0.1:{port}",
                "secret_keys": (SecretStr(Fernet.generate_key().decode()),),
                "health_interval_seconds": 3600,
                "worker_concurrency": 16,
                "send_limit_per_chat": (per_chat.count, per_chat.seconds),
                "send_limit_per_group": (per_group.count, per_group.seconds),
                "send_limit_per_bot": (per_bot.count, per_bot.seconds),
            }
        )
        app = TgrelayApp(settings)
        async with serving(app, port=port):
            rt = app.api.state.runtime
            _, key = await workspaces.create_workspace(rt.db, "bench", now=rt.clock())
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ) as api:
                bot = emulator.emulator.create_bot("bench_bot")
                (await api.post("/v1/bots", json={"token": bot.token})).raise_for_status()
                connections = [
                    await link_group(api, emulator, bot.id, index) for index in range(groups)
                ]
                chat_ids = [c["chat_id"] for c in connections]

                async def confirmed() -> bool:
                    return all(emulator.emulator.sent_messages(c) for c in chat_ids)

                await until(confirmed, "the groups' confirmations")
                # From here on the emulator refuses what Telegram would, with the same limits.
                emulator.emulator.set_flood_control(
                    limits=flood.Limits(
                        per_chat=flood.Limit(count=per_chat.count, window=per_chat.seconds),
                        per_group=flood.Limit(count=per_group.count, window=per_group.seconds),
                        per_bot=flood.Limit(count=per_bot.count, window=per_bot.seconds),
                    )
                )
                expected: dict[int, list[str]] = {c: [] for c in chat_ids}

                async def post(n: int) -> None:
                    connection = connections[n % groups]
                    response = await api.post(
                        "/v1/notifications",
                        json={"connection_id": connection["id"], "text": f"alert {n:05d}"},
                    )
                    if response.status_code != 202:
                        raise SystemExit(f"alert {n} refused: {response.text}")

                # Counting the emulator's sends is cheap; reading the messages copies them all.
                before = sent_to(emulator, chat_ids)
                started = time.monotonic()
                # One round at a time: a round's M posts go to M different groups, so each
                # group's alerts are still queued in the order they are numbered.
                for first in range(0, alerts, groups):
                    round_ = range(first, min(first + groups, alerts))
                    await asyncio.gather(*(post(n) for n in round_))
                    for n in round_:
                        expected[chat_ids[n % groups]].append(f"alert {n:05d}")

                posting = time.monotonic() - started

                def arrived() -> dict[int, list[str]]:
                    return {
                        c: [m["text"] for m in emulator.emulator.sent_messages(c)][1:]
                        for c in chat_ids
                    }

                async def all_arrived() -> bool:
                    return sent_to(emulator, chat_ids) - before >= alerts

                await until(all_arrived, f"{alerts} alerts", timeout=RUN_TIMEOUT_SECONDS)
                elapsed = time.monotonic() - started
                return Result(
                    elapsed=elapsed,
                    posting=posting,
                    rejected=emulator.emulator.flood_report()["rejected"],
                    in_order=arrived() == expected,
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--per-chat", type=limit, default=limit("1/0.1"), metavar="COUNT/SECONDS")
    parser.add_argument("--per-group", type=limit, default=limit("20/2"), metavar="COUNT/SECONDS")
    parser.add_argument("--per-bot", type=limit, default=limit("100/1"), metavar="COUNT/SECONDS")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    if args.alerts < 1 or args.groups < 1:
        parser.error("--alerts and --groups must be at least 1")
    observability.configure_logging("WARNING")
    result = asyncio.run(
        run(
            alerts=args.alerts,
            groups=args.groups,
            per_chat=args.per_chat,
            per_group=args.per_group,
            per_bot=args.per_bot,
            db=args.db,
        )
    )
    allowed = allowed_rate(args.groups, args.per_chat, args.per_group, args.per_bot)
    achieved = args.alerts / result.elapsed
    print(
        f"{args.db:8} {args.alerts} alerts to {args.groups} groups "
        f"(per-chat {args.per_chat}, per-group {args.per_group}, per-bot {args.per_bot}): "
        f"{result.elapsed:.2f} s (POSTs {result.posting:.2f} s, ideal {args.alerts / allowed:.2f} s), "
        f"{achieved:.1f} alerts/s of {allowed:.1f} allowed ({achieved / allowed:.0%}), "
        f"{result.rejected} 429s, in order: {'yes' if result.in_order else 'NO'}"
    )


if __name__ == "__main__":
    main()
