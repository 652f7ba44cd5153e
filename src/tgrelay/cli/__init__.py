"""The `tgrelay` command: serve, worker, migrate, workspace, api-key, bot, emulator, webhooks, events,
deliveries, audit, demo, keys, backup, restore.

Each group of commands lives in its own module here, and imports what it needs inside its
commands: `tgrelay --help` loads typer and these modules, never aiogram, SQLAlchemy or
FastAPI (bench/startup.py).
"""

from __future__ import annotations

from tgrelay.cli import (
    api_keys,
    audit,
    backups,
    bots,
    events,
    invocation,
    keys,
    serving,
    webhooks,
    workspaces,
)

app = invocation.group("tgrelay: Telegram bots and groups, wired into your product.")
app.command()(serving.serve)
app.command("worker")(serving.worker_command)
app.command()(serving.migrate)
app.command()(serving.emulator)
app.command()(serving.demo)
app.add_typer(workspaces.app, name="workspace")
app.add_typer(api_keys.app, name="api-key")
app.add_typer(bots.app, name="bot")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(events.events_app, name="events")
app.add_typer(events.deliveries_app, name="deliveries")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.command()(backups.backup)
app.command()(backups.restore)


def main() -> None:
    app()
