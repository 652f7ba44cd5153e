"""What `tgrelay serve` prints once it is up: where to go, what it runs on, what to do next."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tgrelay.settings import Settings

# Addresses that mean "every interface": a browser reaches them through loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, kw_only=True)
class StartUp:
    base_url: str  # http://host:port, as a browser on this machine reaches it
    data_dir: str  # TGRELAY_DATA_DIR, resolved: the key file (and the SQLite database)
    database: str  # "SQLite, /path" or "PostgreSQL at host:port/db", never a password
    public_url: str | None  # TGRELAY_PUBLIC_URL: webhooks; None: long polling
    worker: bool  # jobs and pollers run in this process
    has_workspace: bool


def base_url(host: str, port: int) -> str:
    host = _ANY_ADDRESS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def database(settings: Settings) -> str:
    path = settings.sqlite_path
    if path is not None:
        return f"SQLite, {path.resolve()}"
    if settings.is_sqlite:
        return "SQLite, in memory"
    url = urlsplit(settings.resolved_database_url)
    port = f":{url.port}" if url.port else ""
    return f"PostgreSQL at {url.hostname}{port}{url.path}"


def text(up: StartUp) -> str:
    telegram = (
        f"webhooks at {up.public_url}/telegram/{{bot_id}}"
        if up.public_url
        else "long polling (set TGRELAY_PUBLIC_URL to receive webhooks)"
    )
    worker = (
        "in this process"
        if up.worker
        else "not in this process (--no-worker): run `tgrelay worker` beside it"
    )
    lines = [
        "tgrelay is running",
        f"  web UI     {up.base_url}/ui/",
        f"  API docs   {up.base_url}/docs",
        f"  data dir   {up.data_dir}",
        f"  database   {up.database}",
        f"  Telegram   {telegram}",
        f"  worker     {worker}",
    ]
    if not up.has_workspace:
        lines.append('  next       no workspace yet: tgrelay workspace create "My team"')
    return "\n".join(lines)
