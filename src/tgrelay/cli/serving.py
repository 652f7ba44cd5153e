"""`tgrelay serve`, `worker`, `migrate`, `emulator` and `demo`: the long-running processes."""

from __future__ import annotations

import errno
import gc
import socket
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from tgrelay.cli import banner, invocation

if TYPE_CHECKING:
    from tgrelay.runtime import Runtime

# What uvicorn exits with when the app's start-up fails (uvicorn.main.STARTUP_FAILURE).
STARTUP_FAILURE = 3


def serve(
    host: Annotated[str | None, typer.Option(help="overrides TGRELAY_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="overrides TGRELAY_PORT")] = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="run jobs and pollers in this process")
    ] = True,
) -> None:
    """Run the HTTP API and webhook intake (and, by default, the worker and pollers)."""
    # Start-up allocates millions of objects that live as long as the process; collecting
    # while importing only walks them again (collector.freeze takes over from here).
    gc.disable()
    settings = invocation.settings()
    bind_host = host or settings.host
    bind_port = port if port is not None else settings.port
    # Claim the port before anything starts, so a clash ends here and not after the worker
    # has begun (uvicorn would only find out once the app's start-up ran).
    listening = _listen(bind_host, bind_port)

    import uvicorn

    from tgrelay import collector, tracing
    from tgrelay.app import TgrelayApp
    from tgrelay.settings import with_secret_keys

    with invocation.errors_as_exit():
        # Before anything is written: uvicorn would report it only as a failed start-up.
        tracing.check_export(settings.otel_endpoint)
    invocation.announce_new_data_dir(settings)
    with invocation.errors_as_exit():
        settings = with_secret_keys(settings)

    async def announce(rt: Runtime) -> None:
        typer.echo(await _banner(rt, bind_host, listening.getsockname()[1], worker), err=True)

    tgrelay_app = TgrelayApp(
        settings,
        run_worker=worker,
        on_started=announce,
        lane_process=worker,
        after_start_up=collector.freeze_after_start_up,
    )
    collector.freeze()
    server = uvicorn.Server(
        uvicorn.Config(
            tgrelay_app,
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
    )
    server.run(sockets=[listening])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; a port in use ends the command with exit code 2."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise invocation.fail(
                f"port {port} on {host} is already in use; "
                "choose another with --port or TGRELAY_PORT",
                code=2,
            ) from None
        raise invocation.fail(f"cannot listen on {host}:{port}: {exc.strerror}", code=2) from None


async def _banner(rt: Runtime, host: str, port: int, worker: bool) -> str:
    from tgrelay.workspaces import service as workspaces

    return banner.text(
        banner.StartUp(
            base_url=banner.base_url(host, port),
            data_dir=str(rt.settings.data_dir.resolve()),
            database=banner.database(rt.settings),
            public_url=rt.settings.public_url,
            worker=worker,
            has_workspace=bool(await workspaces.list_workspaces(rt.db)),
        )
    )


def worker_command() -> None:
    """Run jobs, health checks and pollers without HTTP (cluster mode)."""
    gc.disable()
    settings = invocation.settings()
    import uvloop

    from tgrelay import collector
    from tgrelay.app import run_worker_process

    invocation.announce_new_data_dir(settings)
    with invocation.errors_as_exit():
        collector.freeze()
        # The same event loop as `serve` (uvicorn's uvloop); on bench/deliveries.py it sent
        # about 10 % more webhooks per second than asyncio's default loop.
        uvloop.run(run_worker_process(settings, after_start_up=collector.freeze_after_start_up))


def migrate() -> None:
    """Apply database migrations (also done on every start)."""
    from tgrelay.db import migrate as db_migrate

    settings = invocation.settings()
    invocation.announce_new_data_dir(settings)
    db_migrate.upgrade_sync(settings.resolved_database_url)
    typer.echo("database is up to date")


def emulator(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8081,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
) -> None:
    """Run the Telegram Bot API emulator, to try tgrelay offline."""
    from tgrelay.observability import configure_logging
    from tgrelay.testing.emulator_server import run

    configure_logging()
    run(host, port)


def demo(
    keep: Annotated[
        bool,
        typer.Option("--keep", help="stay up afterwards (until Ctrl-C); print the UI URL and key"),
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=1, help="seconds a step may wait for what it expects")
    ] = 20,
    flows: Annotated[
        bool,
        typer.Option(
            "--flows",
            help="then a conversation: examples/flow_app.py and the billing-address flow "
            "(from a source checkout)",
        ),
    ] = False,
) -> None:
    """The offline tour, end to end: emulator, service, bot, group, alert, signed webhook."""
    from tgrelay.demo import command

    raise typer.Exit(command.main(keep=keep, step_timeout=timeout, flows=flows))
