"""`tgrelay audit list`: a workspace's audit trail, newest first."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from tgrelay.cli import invocation, output

if TYPE_CHECKING:
    from tgrelay import audit
    from tgrelay.runtime import Runtime

app = invocation.group("The audit trail: who changed what, and when.")


@app.command("list")
def list_(
    workspace: Annotated[str, typer.Option("--workspace", "-w", help="workspace id (ws_…)")],
    action: Annotated[
        str | None, typer.Option(help="only this action, e.g. bot.status_changed")
    ] = None,
    bot: Annotated[int | None, typer.Option(help="only rows about this bot id")] = None,
    before: Annotated[
        str | None,
        typer.Option(help="a row id or an ISO 8601 time (UTC without an offset): older rows"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=output.JSON_HELP)] = False,
) -> None:
    """A workspace's audit rows, newest first."""

    async def use(rt: Runtime) -> list[audit.Recorded]:
        from tgrelay import audit
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        return await audit.entries(
            rt.db,
            principal.workspace_id,
            action=action,
            bot_id=bot,
            before=None if before is None else audit.cursor(before),
            limit=limit,
        )

    found = invocation.with_runtime(use)
    if as_json:
        output.json_array([entry.as_json() for entry in found])
        return
    output.table(
        ("id", "at (UTC)", "action", "actor", "bot", "count", "detail"),
        [
            (
                str(entry.id),
                f"{entry.at:%Y-%m-%d %H:%M:%S}",
                entry.action,
                entry.actor,
                "" if entry.bot_id is None else str(entry.bot_id),
                str(entry.count),
                json.dumps(dict(entry.detail), ensure_ascii=False, default=str),
            )
            for entry in found
        ],
        fold=("detail",),
    )
