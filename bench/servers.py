"""What the benchmarks share: loopback ports, server subprocesses, a fresh PostgreSQL database."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tgrelay.settings import async_database_url

POSTGRES_SERVER = os.environ.get(
    "TGRELAY_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {timeout:g}s")


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server subprocess logging to `log`, stopped with SIGTERM (then killed) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def recreate_postgres_database(name: str, *, drop_only: bool = False) -> str:
    """Drop `name` on the benchmark's PostgreSQL server and (unless drop_only) create it empty."""
    admin = create_async_engine(
        async_database_url(f"{POSTGRES_SERVER}/postgres"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop_only:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return f"{POSTGRES_SERVER}/{name}"


def reader_url(database_url: str) -> str:
    """The bench's own connection: read-only on SQLite, so it can never take the write lock."""
    if database_url.startswith("sqlite:///"):
        return async_database_url(f"sqlite:///file:{database_url[10:]}?mode=ro&uri=true")
    return async_database_url(database_url)


def create_workspace(tgrelay: list[str], env: dict[str, str], name: str = "bench") -> str:
    """`tgrelay workspace create` against the configured database; the new API key."""
    created = subprocess.run(
        [*tgrelay, "workspace", "create", name, "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key: str = json.loads(created.stdout)["api_key"]
    return api_key


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time (user + system) so far of a process and of each of its child processes.

    A steadier figure than throughput on a shared machine: the work per request changes
    only with the code, while the rate also follows whatever else the host runs.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    seconds = {}
    for each in [pid, *map(int, children)]:
        # Fields after the command name (which may hold spaces); utime and stime are 14 and 15.
        fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        seconds[each] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


def process_cpu_seconds(app: str) -> float:
    """serve's CPU seconds so far (with its webhooks lane child's, which it adds in; not its
    intake writer's), from `process_cpu_seconds_total` on its /metrics at `app`."""
    scraped = httpx.get(f"{app}/metrics", timeout=30).raise_for_status().text
    for family in text_string_to_metric_families(scraped):
        if family.name == "process_cpu_seconds":
            return float(sum(sample.value for sample in family.samples))
    raise LookupError(f"{app}/metrics has no process_cpu_seconds_total")


@dataclass(frozen=True)
class LockHolds:
    """SQLite's write lock as serve's /metrics tells it so far (tgrelay_sqlite_write_lock_seconds),
    per writer: how many holds lasted at most each bucket's bound, and their summed seconds."""

    at_most: dict[str, dict[float, float]]
    seconds: dict[str, float]

    def since(self, before: LockHolds) -> LockHolds:
        """The holds between `before`'s reading and this one."""
        return LockHolds(
            at_most={
                writer: {
                    bound: count - before.at_most.get(writer, {}).get(bound, 0.0)
                    for bound, count in counts.items()
                }
                for writer, counts in self.at_most.items()
            },
            seconds={
                writer: total - before.seconds.get(writer, 0.0)
                for writer, total in self.seconds.items()
            },
        )

    def describe(self, elapsed: float, limits: tuple[float, ...] = (0.005, 0.01, 0.025)) -> str:
        """Per writer: its holds, their share of `elapsed`, and how many outlasted each limit
        (bucket bounds). An ack waits for whatever holds the lock: the long holds are its tail."""
        parts = []
        for writer in sorted(self.at_most):
            counts = self.at_most[writer]
            holds = counts.get(math.inf, 0.0)
            if not holds:
                continue
            longer = ", ".join(
                f"{(holds - counts[limit]) / holds:.1%} > {limit * 1000:g} ms" for limit in limits
            )
            share = self.seconds.get(writer, 0.0) / elapsed
            parts.append(f"{writer} {holds:,.0f} holds, {share:.0%} of the time ({longer})")
        return "; ".join(parts)


def write_lock_holds(app: str) -> LockHolds:
    """SQLite's write lock so far, by writer, from serve's /metrics at `app` (its base URL).

    Where SQLite is the limit, the lock's time per update is the figure a change to the
    writers moves; it varies much less with the host's load than a rate does.
    """
    scraped = httpx.get(f"{app}/metrics", timeout=30).raise_for_status().text
    at_most: dict[str, dict[float, float]] = {}
    seconds: dict[str, float] = {}
    for family in text_string_to_metric_families(scraped):
        if family.name != "tgrelay_sqlite_write_lock_seconds":
            continue
        for sample in family.samples:
            writer = sample.labels["writer"]
            if sample.name.endswith("_bucket"):
                at_most.setdefault(writer, {})[float(sample.labels["le"])] = sample.value
            elif sample.name.endswith("_sum"):
                seconds[writer] = sample.value
    return LockHolds(at_most=at_most, seconds=seconds)


@contextmanager
def profiled(pid: int, output: Path | None, *, subprocesses: bool = False) -> Iterator[None]:
    """py-spy records `pid` (with `subprocesses`, its children too) while the block runs;
    nothing when `output` is None. `output`'s suffix picks the format: .txt collapsed stacks,
    .json speedscope, else a flame graph (SVG). PYSPY_EXTRA adds py-spy flags (e.g. --gil:
    only the thread holding the GIL, i.e. Python's CPU). py-spy comes from PyPI, not the
    project."""
    if output is None:
        yield
        return
    formats = {".txt": "raw", ".json": "speedscope"}
    spy = subprocess.Popen(
        [
            *("py-spy", "record", "--pid", str(pid), "--rate", "200", "--output", str(output)),
            *("--format", formats.get(output.suffix, "flamegraph")),
            *(["--subprocesses"] if subprocesses else []),
            *os.environ.get("PYSPY_EXTRA", "").split(),
        ]
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        spy.wait(timeout=60)


def serve_env(
    data_dir: Path,
    *,
    emulator_port: int,
    app_port: int,
    database_url: str | None = None,
    webhooks_to_loopback: bool = False,
) -> dict[str, str]:
    """The environment of a `tgrelay` process under bench: a fresh secret key, the emulator
    as Telegram, quiet logs; SQLite in `data_dir` unless `database_url` names another."""
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(data_dir),
        "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TGRELAY_TELEGRAM_API_URL": f"http://127.0.0.1:{emulator_port}",
        "TGRELAY_PUBLIC_URL": f"http://127.0.0.1:{app_port}",
        "TGRELAY_PORT": str(app_port),
        "TGRELAY_LOG_LEVEL": "WARNING",
    }
    if database_url is not None:
        env["TGRELAY_DATABASE_URL"] = database_url
    if webhooks_to_loopback:  # the bench's receiver listens on loopback
        env["TGRELAY_WEBHOOKS_ALLOW_PRIVATE"] = "true"
    return env
