"""`tgrelay workspace …`: workspaces and their first API keys."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from tgrelay.cli import invocation, output

if TYPE_CHECKING:
    from tgrelay.settings import Settings
    from tgrelay.workspaces.models import Workspace

app = invocation.group("Workspaces and their API keys.")

JsonOption = Annotated[bool, typer.Option("--json", help=output.JSON_HELP)]


@app.command("create")
def create(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create a workspace and print its id and first API key (shown once)."""
    from tgrelay.workspaces import service

    workspace, api_key = invocation.with_runtime(
        lambda rt: service.create_workspace(rt.db, name, now=rt.clock())
    )
    if as_json:
        typer.echo(json.dumps({"workspace_id": workspace.id, "api_key": api_key}))
        return
    typer.echo(f"workspace_id: {workspace.id}")
    typer.echo(f"api_key:      {api_key}")
    typer.secho("Store the API key now: it is not shown again.", fg="yellow", err=True)


@app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List workspaces, oldest first."""
    settings = invocation.settings(logging=False)
    found = _listed(settings)
    if as_json:
        output.json_array(
            [{"id": w.id, "name": w.name, "created_at": w.created_at.isoformat()} for w in found]
        )
        return
    output.table(
        ("id", "name", "created_at"),
        [(w.id, w.name, w.created_at.isoformat()) for w in found],
    )


def _listed(settings: Settings) -> list[Workspace]:
    path = settings.sqlite_path
    if path is None:  # PostgreSQL: the service, through SQLAlchemy
        from tgrelay.workspaces import service

        return invocation.with_runtime(lambda rt: service.list_workspaces(rt.db))
    if not path.exists():
        typer.echo(
            f"tgrelay: no database at {path.resolve()} yet, so no workspaces "
            "(`tgrelay serve` or `tgrelay workspace create NAME` creates it; "
            "TGRELAY_DATA_DIR chooses another data directory)",
            err=True,
        )
        return []
    from tgrelay.workspaces import directory

    return directory.list_in_sqlite(path)
