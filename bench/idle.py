"""Benchmark an idle hub: CPU and memory of `tgrelay serve` with one polling bot and no traffic.

Starts the emulator and `tgrelay serve` (worker and pollers in the process; no
TGRELAY_PUBLIC_URL, so the bot long-polls the emulator) as subprocesses on loopback, creates a
workspace, connects one bot through the API, proves its poller works (a user's message is
stored), lets the process settle, then samples it for a while: CPU time (user + system of the
process and of its child processes, from /proc) and resident memory (the process tree's sum,
every second). Prints CPU as a share of one core and the peak RSS, and exits 1 when either is
above its target (issue 15: 1 % of a core, 150 MB). Not part of the test suite.

    uv run python bench/idle.py                     # SQLite, settle 10 s, measure 60 s
    uv run python bench/idle.py --db postgres       # PostgreSQL on 127.0.0.1:5432
    uv run python bench/idle.py --duration 20 --profile /tmp/idle.svg   # py-spy on serve
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from servers import (
    create_workspace,
    free_port,
    process,
    profiled,
    recreate_postgres_database,
    wait_http,
)

POSTGRES_DATABASE = "tgrelay_bench_idle"
# Generous: a loaded machine slows start-up, which is not what this measures.
STEP_TIMEOUT_SECONDS = 120.0
SAMPLE_SECONDS = 1.0
CPU_TARGET_PERCENT = 1.0
RSS_TARGET_MB = 150.0
USER = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}


@dataclass(frozen=True, kw_only=True)
class Sample:
    """What the serve process tree used over the measured window."""

    seconds: float  # wall-clock length of the window
    cpu_seconds: float  # user + system time the tree spent in it
    peak_rss_mb: float  # the largest sum of the tree's resident memory seen
    processes: int  # the most processes the tree held at once (serve and its children)

    @property
    def cpu_percent(self) -> float:
        """CPU as a share of one core."""
        return 100 * self.cpu_seconds / self.seconds


def tree(pid: int) -> list[int]:
    """`pid` and its live descendants (children of any of their threads included)."""
    found, queue = [], [pid]
    while queue:
        each = queue.pop()
        try:
            tasks = list(Path(f"/proc/{each}/task").iterdir())
            children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        found.append(each)
        queue.extend(children)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of `pid`'s process tree, threads included.

    Each process counts its own time and that of its children it has reaped (cutime,
    cstime), so a child that ended between two readings still counts.
    """
    ticks = 0
    for each in tree(pid):
        try:
            # Fields after the command name (which may hold spaces): utime, stime, cutime and
            # cstime are the 14th to the 17th.
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        ticks += sum(int(field) for field in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, int]:
    """The resident memory of `pid`'s process tree (shared pages counted in each process),
    and how many processes it holds."""
    kilobytes, processes = 0, 0
    for each in tree(pid):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except FileNotFoundError:
            continue
        processes += 1
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                kilobytes += int(line.split()[1])
    return kilobytes / 1024, processes


def measure(pid: int, seconds: float) -> Sample:
    """Sample the process tree of `pid` for `seconds`."""
    started, cpu_before = time.monotonic(), cpu_seconds(pid)
    peak, processes = rss_mb(pid)
    while (left := started + seconds - time.monotonic()) > 0:
        time.sleep(min(SAMPLE_SECONDS, left))
        rss, count = rss_mb(pid)
        peak, processes = max(peak, rss), max(processes, count)
    elapsed, cpu_after = time.monotonic() - started, cpu_seconds(pid)
    return Sample(
        seconds=elapsed, cpu_seconds=cpu_after - cpu_before, peak_rss_mb=peak, processes=processes
    )


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """One request that must succeed; its JSON body."""
    response = await client.request(method, path, **kwargs)
    if response.is_error:
        raise SystemExit(f"{method} {path} answered {response.status_code}: {response.text}")
    return response.json()


async def connect_polling_bot(api_url: str, api_key: str, emulator_url: str) -> None:
    """Connect a new bot by token, then wait until a user's message reaches tgrelay by polling."""
    async with (
        httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as api,
        httpx.AsyncClient(base_url=emulator_url, timeout=30) as emulator,
    ):
        bot = await call(emulator, "POST", "/_emulator/bots", json={"username": "idle_bot"})
        connected = await call(api, "POST", "/v1/bots", json={"token": bot["token"]})
        if connected["mode"] != "polling":
            raise SystemExit(f"the bot was connected in {connected['mode']!r} mode, not polling")
        await call(
            emulator,
            "POST",
            "/_emulator/updates",
            json={"bot_id": bot["id"], "from": USER, "text": "hello"},
        )

        async def stored() -> bool:
            page = await call(api, "GET", f"/v1/bots/{bot['id']}/updates")
            return bool(page["updates"])

        try:
            async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
                while not await stored():  # noqa: ASYNC110 - the state is polled over HTTP
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise SystemExit("the poller did not store the user's message") from None


def run_in(
    workdir: Path, database_url: str | None, *, settle: float, duration: float, profile: Path | None
) -> Sample:
    """Start both processes, connect the bot, let serve settle, measure it, stop them."""
    tgrelay = [sys.executable, "-m", "tgrelay"]
    emulator_port, app_port = free_port(), free_port()
    emulator_url, api_url = f"http://127.0.0.1:{emulator_port}", f"http://127.0.0.1:{app_port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TGRELAY_")  # e.g. a TGRELAY_PUBLIC_URL would mean webhooks
    } | {
        "TGRELAY_DATA_DIR": str(workdir / "data"),
        "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TGRELAY_TELEGRAM_API_URL": emulator_url,
        "TGRELAY_PORT": str(app_port),
        "TGRELAY_LOG_LEVEL": "WARNING",
    }
    if database_url is not None:
        env["TGRELAY_DATABASE_URL"] = database_url
    with process(
        [*tgrelay, "emulator", "--port", str(emulator_port)], env, workdir / "emulator.log"
    ):
        wait_http(f"{emulator_url}/_emulator/bots", timeout=STEP_TIMEOUT_SECONDS)
        api_key = create_workspace(tgrelay, env)
        with process([*tgrelay, "serve"], env, workdir / "serve.log") as serve:
            try:
                wait_http(f"{api_url}/healthz", timeout=STEP_TIMEOUT_SECONDS)
                asyncio.run(connect_polling_bot(api_url, api_key, emulator_url))
            except SystemExit:
                print((workdir / "serve.log").read_text()[-3000:], file=sys.stderr)
                raise
            time.sleep(settle)
            with profiled(serve.pid, profile, subprocesses=True):
                return measure(serve.pid, duration)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--settle", type=float, default=10, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=60, help="seconds measured")
    parser.add_argument("--profile", type=Path, help="py-spy flame graph of serve while measured")
    args = parser.parse_args()
    if args.settle < 0 or args.duration <= 0:
        parser.error("--settle must not be negative and --duration must be positive")
    with tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp:
        database_url = (
            asyncio.run(recreate_postgres_database(POSTGRES_DATABASE))
            if args.db == "postgres"
            else None
        )
        try:
            sample = run_in(
                Path(tmp),
                database_url,
                settle=args.settle,
                duration=args.duration,
                profile=args.profile,
            )
        finally:
            if database_url is not None:
                asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))
    within = sample.cpu_percent <= CPU_TARGET_PERCENT and sample.peak_rss_mb <= RSS_TARGET_MB
    print(
        f"{args.db}: serve idle with one polling bot ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC), "
        f"{sample.seconds:.0f} s after {args.settle:g} s settling: "
        f"CPU {sample.cpu_seconds:.2f} s = {sample.cpu_percent:.2f} % of a core "
        f"(target <= {CPU_TARGET_PERCENT:g} %), "
        f"peak RSS {sample.peak_rss_mb:.0f} MB over {sample.processes} processes "
        f"(target <= {RSS_TARGET_MB:g} MB): {'ok' if within else 'OVER TARGET'}"
    )
    if not within:
        sys.exit(1)


if __name__ == "__main__":
    main()
