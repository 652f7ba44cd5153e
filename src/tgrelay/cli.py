"""The `tgrelay` command: serve, worker, migrate, workspace, bot, emulator, webhooks, events,
deliveries."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import typer
import uvicorn
import uvloop
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from tgrelay import errors
from tgrelay.bots import service as bots
from tgrelay.bots.models import ConnectedBot
from tgrelay.db import migrate as db_migrate
from tgrelay.events import catalog, reference, signing
from tgrelay.events import service as events
from tgrelay.events.models import Delivery, DeliveryStatus
from tgrelay.observability import configure_logging
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings, with_secret_keys
from tgrelay.workspaces import service as workspaces

T = TypeVar("T")

app = typer.Typer(
    help="tgrelay: Telegram bots and groups, wired into your product.", no_args_is_help=True
)
workspace_app = typer.Typer(help="Workspaces and their API keys.", no_args_is_help=True)
bot_app = typer.Typer(help="Connected bots.", no_args_is_help=True)
app.add_typer(workspace_app, name="workspace")
app.add_typer(bot_app, name="bot")
console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings.log_level)
    return settings


@contextmanager
def _errors_as_exit() -> Iterator[None]:
    """tgrelay's own errors end the command with their message and exit status 1."""
    try:
        yield
    except errors.TgrelayError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None


def _with_runtime(use: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run one use case with a short-lived Runtime."""

    async def run() -> T:
        async with open_runtime(_settings()) as rt:
            return await use(rt)

    with _errors_as_exit():
        return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="overrides TGRELAY_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="overrides TGRELAY_PORT")] = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="run jobs and pollers in this process")
    ] = True,
) -> None:
    """Run the HTTP API and webhook intake (and, by default, the worker and pollers)."""
    from tgrelay.app import TgrelayApp

    with _errors_as_exit():
        settings = with_secret_keys(_settings())
    tgrelay_app = TgrelayApp(settings, run_worker=worker)
    _freeze_start_up()
    uvicorn.run(
        tgrelay_app,
        host=host or settings.host,
        port=port or settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        # No "server: uvicorn" on every answer: it tells scanners what runs, and costs a
        # header check per request on the intake's hot path.
        server_header=False,
        # Off unless configured: trusting X-Forwarded-For costs time on every request.
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=15,
    )


@app.command("worker")
def worker_command() -> None:
    """Run jobs, health checks and pollers without HTTP (cluster mode)."""
    from tgrelay.app import run_worker_process

    with _errors_as_exit():
        settings = _settings()
        _freeze_start_up()
        # The same event loop as `serve` (uvicorn's uvloop); on bench/deliveries.py it sent
        # about 10 % more webhooks per second than asyncio's default loop.
        uvloop.run(run_worker_process(settings))


def _freeze_start_up() -> None:
    """Keep what start-up made (modules, pydantic models and schemas) from the collector.

    It lives as long as the process; out of the collector's sight, full collections stop
    walking it. On bench/deliveries.py this took event-to-delivery p99 at 1,000 events/s
    from 78–141 ms to 36–43 ms.
    """
    gc.collect()
    gc.freeze()


@app.command()
def migrate() -> None:
    """Apply database migrations (also done on every start)."""
    settings = _settings()
    db_migrate.upgrade_sync(settings.resolved_database_url)
    console.print("database is up to date")


@app.command()
def emulator(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8081,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Run the Telegram Bot API emulator, to try tgrelay offline."""
    from tgrelay.testing.emulator_server import run

    configure_logging()
    run(host, port)


@workspace_app.command("create")
def workspace_create(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a workspace and print its id and first API key (shown once)."""
    workspace, api_key = _with_runtime(
        lambda rt: workspaces.create_workspace(rt.db, name, now=rt.clock())
    )
    if as_json:
        print(json.dumps({"workspace_id": workspace.id, "api_key": api_key}))
        return
    console.print(f"workspace_id: {workspace.id}")
    console.print(f"api_key:      {api_key}")
    console.print("[yellow]Store the API key now: it is not shown again.[/yellow]")


@workspace_app.command("list")
def workspace_list() -> None:
    """List workspaces."""
    found = _with_runtime(lambda rt: workspaces.list_workspaces(rt.db))
    table = Table("id", "name", "created_at")
    for ws in found:
        table.add_row(ws.id, ws.name, ws.created_at.isoformat())
    console.print(table)


WorkspaceOption = Annotated[str, typer.Option("--workspace", "-w", help="workspace id (ws_…)")]
TokenArgument = Annotated[
    str | None,
    typer.Argument(help="bot token; omit to be prompted (keeps it out of shell history)"),
]


def _token_or_prompt(token: str | None) -> str:
    return token if token else str(typer.prompt("Bot token", hide_input=True))


def _print_bots(found: Sequence[ConnectedBot]) -> None:
    table = Table("id", "username", "mode", "status", "token", "last error")
    for bot in found:
        status = bot.status.value + (f" ({bot.conflict_kind.value})" if bot.conflict_kind else "")
        table.add_row(
            str(bot.id),
            f"@{bot.username}",
            bot.mode.value,
            status,
            bot.token_fingerprint,
            bot.last_error_message or "",
        )
    console.print(table)


@bot_app.command("connect")
def bot_connect(workspace: WorkspaceOption, token: TokenArgument = None) -> None:
    """Connect a bot by its token (verified with getMe)."""
    secret = _token_or_prompt(token)

    async def use(rt: Runtime) -> ConnectedBot:
        principal = await workspaces.operator(rt.db, workspace)
        return await bots.connect(rt, principal, secret)

    _print_bots([_with_runtime(use)])


@bot_app.command("list")
def bot_list(workspace: WorkspaceOption) -> None:
    """List a workspace's bots."""
    _print_bots(_with_runtime(lambda rt: bots.list_bots(rt, workspace)))


@bot_app.command("rotate")
def bot_rotate(workspace: WorkspaceOption, bot_id: int, token: TokenArgument = None) -> None:
    """Replace a bot's token with a new one of the same bot."""
    secret = _token_or_prompt(token)

    async def use(rt: Runtime) -> ConnectedBot:
        principal = await workspaces.operator(rt.db, workspace)
        return await bots.rotate_token(rt, principal, bot_id, secret)

    _print_bots([_with_runtime(use)])


@bot_app.command("disconnect")
def bot_disconnect(workspace: WorkspaceOption, bot_id: int) -> None:
    """Disconnect a bot (deletes its webhook)."""

    async def use(rt: Runtime) -> ConnectedBot:
        principal = await workspaces.operator(rt.db, workspace)
        return await bots.disconnect(rt, principal, bot_id)

    _print_bots([_with_runtime(use)])


@bot_app.command("check")
def bot_check(workspace: WorkspaceOption, bot_id: int) -> None:
    """Run a bot's health check now."""

    async def use(rt: Runtime) -> ConnectedBot:
        await bots.get_bot(rt, workspace, bot_id)
        return await bots.check_health(rt, bot_id, actor="cli")

    _print_bots([_with_runtime(use)])


# ── webhooks: outgoing event webhooks, as a receiver sees them ──────────────────────────

webhooks_app = typer.Typer(
    help="Outgoing event webhooks: verify what a receiver got.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")


def _value_or_file(value: str) -> bytes:
    """`@path` is the file's bytes exactly as stored; any other value is itself."""
    if not value.startswith("@"):
        return value.encode()
    try:
        return Path(value[1:]).read_bytes()
    except OSError as exc:
        raise errors.InvalidInput(f"cannot read {value[1:]}: {exc.strerror}") from None


@webhooks_app.command("verify")
def webhooks_verify(
    secret: Annotated[
        str,
        typer.Option(envvar="TGRELAY_WEBHOOK_SECRET", help="the endpoint's secret (whsec_…)"),
    ],
    headers: Annotated[
        str,
        typer.Option(
            help="received headers: a JSON object, or @file of JSON or 'Name: value' lines"
        ),
    ],
    body: Annotated[str, typer.Option(help="received body, or @file (read byte for byte)")],
    tolerance: Annotated[
        int, typer.Option(min=0, help="seconds the timestamp may be away from now")
    ] = int(signing.TOLERANCE.total_seconds()),
) -> None:
    """Check that a webhook was signed with this secret, as a receiver would."""
    with _errors_as_exit():
        received = signing.parse_headers(_value_or_file(headers).decode(errors="replace"))
        signing.verify(
            secret,
            headers=received,
            body=_value_or_file(body),
            tolerance=timedelta(seconds=tolerance),
        )
    console.print(
        f"verified: webhook-id={received[signing.ID_HEADER]} "
        f"timestamp={received[signing.TIMESTAMP_HEADER]}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


# ── events and deliveries: the event catalog, and replays of outgoing webhooks ─────────

events_app = typer.Typer(
    help="The events tgrelay sends to webhook endpoints.", no_args_is_help=True
)
deliveries_app = typer.Typer(
    help="An endpoint's deliveries: list them, send them again.", no_args_is_help=True
)
app.add_typer(events_app, name="events")
app.add_typer(deliveries_app, name="deliveries")


@events_app.command("catalog")
def events_catalog(
    markdown: Annotated[
        bool, typer.Option("--markdown", help=f"print Markdown, as in {reference.CATALOG_DOC}")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON: each type with its schema and example")
    ] = False,
) -> None:
    """Every event type tgrelay sends: a summary, or the whole catalog as Markdown or JSON."""
    if markdown and as_json:
        raise typer.BadParameter("choose one of --markdown and --json")
    if markdown:
        typer.echo(reference.catalog_markdown(), nl=False)
    elif as_json:
        typer.echo(json.dumps(reference.catalog_json(), indent=2, ensure_ascii=False))
    else:
        table = Table("type", "description")
        for spec in catalog.CATALOG:
            note = " [dim](reserved)[/dim]" if spec.reserved else ""
            table.add_row(spec.type.value, spec.description + note)
        console.print(table)


EndpointOption = Annotated[str, typer.Option("--endpoint", "-e", help="endpoint id (ep_…)")]


def _instant(value: str) -> datetime:
    """An ISO 8601 date or time; one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@deliveries_app.command("list")
def deliveries_list(
    workspace: WorkspaceOption,
    endpoint: EndpointOption,
    status: Annotated[DeliveryStatus | None, typer.Option(help="only these")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
) -> None:
    """An endpoint's deliveries, newest first."""
    found: list[Delivery] = _with_runtime(
        lambda rt: events.list_deliveries(
            rt, workspace, endpoint, status=status, before=None, limit=limit
        )
    )
    table = Table("id", "event", "type", "status", "tries", "last answer", "created (UTC)")
    table.columns[1].overflow = "fold"  # the whole event id, to be copied, even when narrow
    for delivery in found:
        answer = delivery.last_status_code or delivery.last_error or ""
        table.add_row(
            delivery.public_id,
            delivery.event_id,
            delivery.event_type,
            delivery.status.value,
            str(delivery.attempts),
            str(answer),
            f"{delivery.created_at:%Y-%m-%d %H:%M:%S}",
        )
    console.print(table)


@deliveries_app.command("replay")
def deliveries_replay(
    workspace: WorkspaceOption,
    endpoint: EndpointOption,
    since: Annotated[
        datetime,
        typer.Option(
            parser=_instant,
            help="replay deliveries created from this instant (ISO 8601; UTC without an offset)",
        ),
    ],
    until: Annotated[
        datetime | None,
        typer.Option(parser=_instant, help="…and before this one (default: up to now)"),
    ] = None,
    status: Annotated[
        Literal["dead_letter", "delivered"] | None,
        typer.Option(help="only these; default both (pending ones are queued already)"),
    ] = None,
) -> None:
    """Send an endpoint's deliveries created in [since, until) again, oldest first."""
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("queueing deliveries", total=None)

        async def use(rt: Runtime) -> int:
            principal = await workspaces.operator(rt.db, workspace)
            return await events.replay(
                rt,
                principal,
                endpoint,
                since=since,
                until=until,
                status=None if status is None else DeliveryStatus(status),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

        queued = _with_runtime(use)
    noun = "delivery" if queued == 1 else "deliveries"
    console.print(f"queued {queued} {noun} of {endpoint} to be sent again", highlight=False)


@app.command()
def demo(
    keep: Annotated[
        bool,
        typer.Option("--keep", help="stay up afterwards (until Ctrl-C); print the UI URL and key"),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="seconds a step may wait for what it expects")
    ] = 20,
) -> None:
    """The offline tour, end to end: emulator, service, bot, group, alert, signed webhook."""
    from tgrelay.demo import command

    raise typer.Exit(command.main(keep=keep, step_timeout=timeout))


def main() -> None:
    app()
