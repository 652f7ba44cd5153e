"""The cluster test's own PostgreSQL and Redis, which it restarts and stops mid-load.

Never the machine's shared servers (5432, 6379): other pytest workers use them at the same
time. PostgreSQL is a cluster of Debian's postgresql-common (`pg_createcluster`), run by
`pg_ctlcluster` as the `postgres` user; Redis is a `redis-server` child process, without
persistence, started again on the same port after a stop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio
import redis.exceptions

from tests.e2e.harness import eventually, free_port

# Clusters are named after the test process that created them, so that a leftover of a run
# that died before its cleanup is told from a cluster a concurrent run still uses.
CLUSTER_PREFIX = "tgrelay_cluster_"
PG_TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters")
# pg_ctlcluster hands a cluster to systemd where systemd runs; the test manages its own.
PG_CTL = ("pg_ctlcluster", "--skip-systemctl-redirect")


@dataclass(frozen=True, kw_only=True)
class PostgresCluster:
    """A running cluster of the test's own: trust authentication on 127.0.0.1:`port`."""

    version: str
    name: str
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def restart(self) -> None:
        """`pg_ctlcluster … restart`: a fast shutdown (every connection ended), then a start;
        returns once the server accepts connections again."""
        await _run(*PG_CTL, self.version, self.name, "restart")


@asynccontextmanager
async def postgres_cluster() -> AsyncIterator[PostgresCluster]:
    """A new cluster on a free port, started; dropped afterwards. Skips without the tools."""
    missing = [tool for tool in PG_TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not found (Debian's postgresql-common)")
    if os.geteuid() != 0:
        pytest.skip("pg_createcluster needs root to create a cluster of the postgres user")
    version = _newest_version()
    await _drop_leftovers()
    cluster = PostgresCluster(
        version=version, name=f"{CLUSTER_PREFIX}{os.getpid()}", port=free_port()
    )
    await _run(
        "pg_createcluster",
        version,
        cluster.name,
        "--port",
        str(cluster.port),
        "--start-conf=manual",  # never started by the machine's boot
        "-o",
        "ssl=off",  # as the shared server: asyncpg would otherwise negotiate TLS
        "--start",
        "--",
        "--auth-host=trust",
        "--auth-local=trust",
    )
    try:
        yield cluster
    finally:
        await _run("pg_dropcluster", "--stop", version, cluster.name)


def _newest_version() -> str:
    installed = [p.parent.parent.name for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    if not installed:
        pytest.skip("no PostgreSQL server installed under /usr/lib/postgresql")
    return max(installed, key=float)


async def _drop_leftovers() -> None:
    """Drop the clusters of test processes that are gone (killed before their cleanup)."""
    found = await _run("pg_lsclusters", "--no-header")
    for line in found.splitlines():
        version, name, *_ = line.split()
        owner = name.removeprefix(CLUSTER_PREFIX)
        if name.startswith(CLUSTER_PREFIX) and owner.isdigit() and not _alive(int(owner)):
            await _run("pg_dropcluster", "--stop", version, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _run(*args: str) -> str:
    """Run a command off the event loop (the test's balancer and receiver run on it)."""
    process = await asyncio.create_subprocess_exec(
        *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited with {process.returncode}:\n{text}")
    return text


@dataclass(kw_only=True)
class RedisServer:
    """`redis-server` on 127.0.0.1:`port` without persistence: a stop forgets every key."""

    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start it (again, on the same port); return once it answers PING."""
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [
                    "redis-server",
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=1)

        async def answers() -> bool:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.popen.returncode}")
            try:
                return bool(await client.ping())
            except (redis.exceptions.RedisError, OSError):
                return False

        try:
            await eventually(answers, timeout=20, interval=0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """SIGTERM, as a service manager stops it; return once it has exited."""
        popen = self.popen
        if popen is None or popen.poll() is not None:
            return
        popen.terminate()

        async def exited() -> bool:
            return popen.poll() is not None

        await eventually(exited, timeout=20, interval=0.02)


@asynccontextmanager
async def redis_server(log: Path) -> AsyncIterator[RedisServer]:
    """A running redis-server of the test's own, on a free port; stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found")
    server = RedisServer(port=free_port(), log=log)
    await server.start()
    try:
        yield server
    finally:
        if server.popen is not None and server.popen.poll() is None:
            server.popen.kill()
            server.popen.wait()
