"""`tgrelay bot …`: connect, list, rotate, disconnect and check a workspace's bots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from tgrelay.cli import invocation, output

if TYPE_CHECKING:
    from tgrelay.bots.models import ConnectedBot
    from tgrelay.runtime import Runtime

app = invocation.group("Connected bots.")

WorkspaceOption = Annotated[str, typer.Option("--workspace", "-w", help="workspace id (ws_…)")]
TokenArgument = Annotated[
    str | None,
    typer.Argument(help="bot token; omit to be prompted (keeps it out of shell history)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help=output.JSON_HELP)]


def _token_or_prompt(token: str | None) -> str:
    return token if token else str(typer.prompt("Bot token", hide_input=True))


def _print_bots(found: Sequence[ConnectedBot], *, as_json: bool) -> None:
    if as_json:
        from tgrelay.bots.api import BotView

        output.json_array([BotView.of(bot).model_dump(mode="json") for bot in found])
        return
    rows = []
    for bot in found:
        status = bot.status.value + (f" ({bot.conflict_kind.value})" if bot.conflict_kind else "")
        rows.append(
            (
                str(bot.id),
                f"@{bot.username}",
                bot.mode.value,
                status,
                bot.token_fingerprint,
                bot.last_error_message or "",
            )
        )
    output.table(("id", "username", "mode", "status", "token", "last error"), rows)


@app.command("connect")
def connect(
    workspace: WorkspaceOption, token: TokenArgument = None, as_json: JsonOption = False
) -> None:
    """Connect a bot by its token (verified with getMe)."""
    secret = _token_or_prompt(token)

    async def use(rt: Runtime) -> ConnectedBot:
        from tgrelay.bots import service
        from tgrelay.workspaces import service as workspaces

        return await service.connect(rt, await workspaces.operator(rt.db, workspace), secret)

    _print_bots([invocation.with_runtime(use)], as_json=as_json)


@app.command("list")
def list_(workspace: WorkspaceOption, as_json: JsonOption = False) -> None:
    """List a workspace's bots, disconnected ones included."""

    async def use(rt: Runtime) -> list[ConnectedBot]:
        from tgrelay.bots import service
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        return await service.list_bots(rt, principal.workspace_id)

    _print_bots(invocation.with_runtime(use), as_json=as_json)


@app.command("rotate")
def rotate(
    workspace: WorkspaceOption,
    bot_id: int,
    token: TokenArgument = None,
    as_json: JsonOption = False,
) -> None:
    """Replace a bot's token with a new one of the same bot."""
    secret = _token_or_prompt(token)

    async def use(rt: Runtime) -> ConnectedBot:
        from tgrelay.bots import service
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        return await service.rotate_token(rt, principal, bot_id, secret)

    _print_bots([invocation.with_runtime(use)], as_json=as_json)


@app.command("disconnect")
def disconnect(workspace: WorkspaceOption, bot_id: int, as_json: JsonOption = False) -> None:
    """Disconnect a bot (deletes its webhook)."""

    async def use(rt: Runtime) -> ConnectedBot:
        from tgrelay.bots import service
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        return await service.disconnect(rt, principal, bot_id)

    _print_bots([invocation.with_runtime(use)], as_json=as_json)


@app.command("check")
def check(workspace: WorkspaceOption, bot_id: int, as_json: JsonOption = False) -> None:
    """Run a bot's health check now."""

    async def use(rt: Runtime) -> ConnectedBot:
        from tgrelay.bots import service
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        await service.get_bot(rt, principal.workspace_id, bot_id)
        return await service.check_health(rt, bot_id, actor="cli")

    _print_bots([invocation.with_runtime(use)], as_json=as_json)
