"""What `tgrelay serve` prints once it is up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgrelay.cli import banner
from tgrelay.settings import Settings


def start_up(**changes: object) -> banner.StartUp:
    fields: dict[str, object] = {
        "base_url": "http://127.0.0.1:8000",
        "data_dir": "/srv/tgrelay/.tgrelay",
        "database": "SQLite, /srv/tgrelay/.tgrelay/tgrelay.db",
        "public_url": None,
        "worker": True,
        "has_workspace": False,
    } | changes
    return banner.StartUp(**fields)  # type: ignore[arg-type]


def test_a_first_start_shows_where_to_go_and_what_to_do_next() -> None:
    """Polling, in-process worker, no workspace: URLs, data, mode, and the command to run."""
    assert banner.text(start_up()).splitlines() == [
        "tgrelay is running",
        "  web UI     http://127.0.0.1:8000/ui/",
        "  API docs   http://127.0.0.1:8000/docs",
        "  data dir   /srv/tgrelay/.tgrelay",
        "  database   SQLite, /srv/tgrelay/.tgrelay/tgrelay.db",
        "  Telegram   long polling (set TGRELAY_PUBLIC_URL to receive webhooks)",
        "  worker     in this process",
        '  next       no workspace yet: tgrelay workspace create "My team"',
    ]


def test_a_webhook_node_without_worker_says_so_and_skips_the_hint() -> None:
    """With a public URL, --no-worker and a workspace, the banner names both, with no hint."""
    lines = banner.text(
        start_up(public_url="https://hub.example.com", worker=False, has_workspace=True)
    ).splitlines()
    assert lines[5:] == [
        "  Telegram   webhooks at https://hub.example.com/telegram/{bot_id}",
        "  worker     not in this process (--no-worker): run `tgrelay worker` beside it",
    ]


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("0.0.0.0", 80, "http://127.0.0.1:80"),
        ("::", 8000, "http://[::1]:8000"),
        ("::1", 9000, "http://[::1]:9000"),
        ("hub.internal", 8000, "http://hub.internal:8000"),
    ],
)
def test_base_url_is_what_a_browser_on_this_machine_opens(host: str, port: int, url: str) -> None:
    """Listening on every interface is shown as loopback; IPv6 addresses get brackets."""
    assert banner.base_url(host, port) == url


def test_database_names_the_kind_and_never_a_password(tmp_path: Path) -> None:
    """SQLite shows its file; PostgreSQL its host, port and database, without credentials."""
    sqlite = Settings(data_dir=tmp_path)
    postgres = Settings(database_url="postgresql://tg:hunter2@db.internal:5433/relay")
    assert (banner.database(sqlite), banner.database(postgres)) == (
        f"SQLite, {tmp_path.resolve() / 'tgrelay.db'}",
        "PostgreSQL at db.internal:5433/relay",
    )
