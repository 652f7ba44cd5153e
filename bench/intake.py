"""Benchmark the webhook intake: durable updates/s and ack latency (p50/p99) under wrk.

Starts the emulator and `tgrelay serve` (webhook mode) as subprocesses, connects a bot,
drives `POST /telegram/{bot_id}` with wrk (Debian package `wrk`) at N connections, then
checks that every 2xx'd update is in the database. By default `serve` runs as the README
starts it, with its worker processing the updates as they arrive: the intake is measured
while the worker drains the backlog wrk builds, and the updates processed during the run
are reported too. `--no-worker` measures the intake alone. Not part of the test suite.

    uv run python bench/intake.py                      # SQLite and PostgreSQL, 40 connections
    uv run python bench/intake.py --db sqlite --connections 40 --duration 10
    uv run python bench/intake.py --db sqlite --no-worker
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from servers import (
    cpu_seconds,
    create_workspace,
    free_port,
    process,
    recreate_postgres_database,
    serve_env,
    wait_http,
    write_lock_holds,
)
from tgrelay.db import tables
from tgrelay.inbox.models import PROCESS_UPDATE
from tgrelay.settings import async_database_url

HERE = Path(__file__).parent
RESULT = re.compile(r"RESULT (.*)")


async def stored_and_processed(database_url: str, bot_id: int) -> tuple[int, int]:
    """Updates stored for the bot, and process_update jobs done."""
    engine = create_async_engine(async_database_url(database_url))
    async with engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count())
            .select_from(tables.updates)
            .where(tables.updates.c.bot_id == bot_id)
        )
        processed = await conn.scalar(
            select(func.count())
            .select_from(tables.jobs)
            .where(tables.jobs.c.kind == PROCESS_UPDATE, tables.jobs.c.state == "done")
        )
    await engine.dispose()
    return int(stored or 0), int(processed or 0)


async def database_backends(database_url: str) -> list[int]:
    """The PostgreSQL server processes serving the database (ours excluded)."""
    engine = create_async_engine(async_database_url(database_url))
    async with engine.connect() as conn:
        pids = await conn.scalars(
            text(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        found = [int(pid) for pid in pids]
    await engine.dispose()
    return found


def backends_cpu_seconds(pids: list[int]) -> float:
    """CPU time so far of the backends still running (the same machine's /proc)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError):
            total += cpu_seconds(pid)[pid]
    return total


def run_one(
    db: str,
    connections: int,
    duration: int,
    threads: int,
    warmup: int,
    workdir: Path,
    *,
    worker: bool,
) -> dict[str, Any]:
    tgrelay = [sys.executable, "-m", "tgrelay"]
    emulator_port, app_port = free_port(), free_port()
    data_dir = workdir / db
    shutil.rmtree(data_dir, ignore_errors=True)
    database_url = (
        asyncio.run(recreate_postgres_database("tgrelay_bench"))
        if db == "postgres"
        else f"sqlite:///{data_dir / 'tgrelay.db'}"
    )
    env = serve_env(
        data_dir, emulator_port=emulator_port, app_port=app_port, database_url=database_url
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    with process(
        [*tgrelay, "emulator", "--port", str(emulator_port)], env, workdir / f"{db}-emulator.log"
    ):
        wait_http(f"http://127.0.0.1:{emulator_port}/_emulator/bots/1")
        api_key = create_workspace(tgrelay, env)
        bot = httpx.post(
            f"http://127.0.0.1:{emulator_port}/_emulator/bots", json={"username": "bench_bot"}
        ).json()
        serve_command = [*tgrelay, "serve", *([] if worker else ["--no-worker"])]
        with process(serve_command, env, workdir / f"{db}-serve.log") as serve:
            wait_http(f"http://127.0.0.1:{app_port}/healthz")
            connected = httpx.post(
                f"http://127.0.0.1:{app_port}/v1/bots",
                json={"token": bot["token"]},
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=30,
            )
            connected.raise_for_status()
            webhook = httpx.get(
                f"http://127.0.0.1:{emulator_port}/_emulator/bots/{bot['id']}"
            ).json()
            secret = webhook["webhook"]["secret_token"]
            # The emulator must not push to us during the run: only wrk talks to the intake.
            url = f"http://127.0.0.1:{app_port}"
            path = f"/telegram/{bot['id']}"

            def drive(seconds: int, first_update_id: int) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [
                        "wrk",
                        f"-t{threads}",
                        f"-c{connections}",
                        f"-d{seconds}s",
                        "--latency",
                        "-s",
                        str(HERE / "intake.lua"),
                        url,
                        "--",
                        path,
                        secret,
                        str(first_update_id),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                )

            # A fresh database grows its files on the first commits; a running service's has.
            if warmup:
                drive(warmup, first_update_id=0)
            before, processed_before = asyncio.run(stored_and_processed(database_url, bot["id"]))
            # PostgreSQL's share: the backends serving the database, open since the warm-up.
            backends = asyncio.run(database_backends(database_url)) if db == "postgres" else []
            backends_before = backends_cpu_seconds(backends)
            cpu_before = cpu_seconds(serve.pid)
            holds_before = write_lock_holds(url) if db == "sqlite" else None
            wrk = drive(duration, first_update_id=10**12)
            cpu_after = cpu_seconds(serve.pid)
            holds_after = write_lock_holds(url) if db == "sqlite" else None
            backends_used = backends_cpu_seconds(backends) - backends_before
            after, processed_after = asyncio.run(stored_and_processed(database_url, bot["id"]))
        match = RESULT.search(wrk.stdout)
        if match is None:
            raise SystemExit(f"wrk printed no result:\n{wrk.stdout}\n{wrk.stderr}")
        fields = dict(part.split("=") for part in match.group(1).split())
        stored = after - before
    # The server process, then its children (on SQLite, the intake's writer process).
    cpu_used = [cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after]
    requests = int(fields["requests"])
    failed = int(fields["errors"])
    seconds = int(fields["duration_us"]) / 1e6
    return {
        "requests": requests,
        "failed": failed,
        "stored": stored,
        "updates_per_s": stored / seconds,
        "processed_per_s": (processed_after - processed_before) / seconds,
        "backlog": after - processed_after,
        "p50_ms": int(fields["p50_us"]) / 1000,
        "p99_ms": int(fields["p99_us"]) / 1000,
        "server_cpu_us": cpu_used[0] / requests * 1e6,
        "children_cpu_us": sum(cpu_used[1:]) / requests * 1e6,
        "database_cpu_us": backends_used / requests * 1e6,
        "lock_holds": (
            holds_after.since(holds_before).describe(seconds)
            if holds_after is not None and holds_before is not None
            else ""
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load before measuring")
    parser.add_argument(
        "--no-worker", action="store_true", help="`serve --no-worker`: the intake alone"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    with tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp:
        for db in dbs:
            result = run_one(
                db,
                args.connections,
                args.duration,
                args.threads,
                args.warmup,
                Path(tmp),
                worker=not args.no_worker,
            )
            mode = "serve --no-worker" if args.no_worker else "serve"
            processing = (
                ""
                if args.no_worker
                else f"; meanwhile {result['processed_per_s']:,.0f} updates/s processed, "
                f"{result['backlog']:,.0f} left at the end"
            )
            print(
                f"{db:8} {mode}, {args.connections} connections: "
                f"{result['updates_per_s']:,.0f} durable updates/s, "
                f"ack p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms "
                f"({result['stored']:,} stored of {result['requests']:,} requests, "
                f"{result['failed']} errors/non-2xx); CPU per request: "
                f"{result['server_cpu_us']:.0f} µs server process, "
                f"{result['children_cpu_us']:.0f} µs its children"
                + (
                    f", {result['database_cpu_us']:.0f} µs PostgreSQL's backends"
                    if db == "postgres"
                    else ""
                )
                + processing
            )
            if result["lock_holds"]:
                print(f"         SQLite's write lock: {result['lock_holds']}")


if __name__ == "__main__":
    main()
