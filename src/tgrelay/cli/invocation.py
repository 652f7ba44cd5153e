"""What every command shares: its settings, errors as exit codes, a short-lived Runtime.

Heavy libraries are imported inside the functions that need them, so a command that never
opens the database or calls Telegram never pays for SQLAlchemy or aiogram
(`bench/startup.py` measures it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import typer

from tgrelay import errors

if TYPE_CHECKING:
    from tgrelay.runtime import Runtime
    from tgrelay.settings import Settings

T = TypeVar("T")


def group(help: str) -> typer.Typer:
    """A command group. Help is plain text and errors plain tracebacks: typer's rich
    formatting would import rich's Markdown and traceback modules, a quarter of a second
    on every call, `--help` included."""
    return typer.Typer(
        help=help, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False
    )


def settings(*, logging: bool = True) -> Settings:
    """The process's Settings; with `logging`, JSON logs on stderr configured from them."""
    from tgrelay.settings import Settings

    with errors_as_exit():
        found = Settings()
    if logging:
        from tgrelay.observability import configure_logging

        configure_logging(found.log_level)
    return found


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print `error: message` on stderr; raise the returned Exit to end with `code`."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def errors_as_exit() -> Iterator[None]:
    """tgrelay's own errors end the command with their message and exit status 1."""
    try:
        yield
    except errors.TgrelayError as exc:
        raise fail(exc.message) from None


def announce_new_data_dir(found: Settings) -> None:
    """Say so on stderr when this command is about to create an empty data directory.

    A command run from the wrong folder would otherwise start a second, empty tgrelay
    silently beside the real one.
    """
    if found.is_sqlite and found.database_url is None and not found.data_dir.exists():
        typer.echo(
            f"tgrelay: creating a new, empty data directory at {found.data_dir.resolve()} "
            "(none exists there yet; TGRELAY_DATA_DIR chooses another)",
            err=True,
        )


def with_runtime(use: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run one use case with a short-lived Runtime; tgrelay's errors exit with status 1."""
    from tgrelay import wiring
    from tgrelay.runtime import open_runtime

    found = settings()
    announce_new_data_dir(found)

    async def run() -> T:
        async with open_runtime(found) as rt:
            return await use(wiring.install(rt))

    with errors_as_exit():
        return asyncio.run(run())
