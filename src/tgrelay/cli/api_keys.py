"""`tgrelay api-key …`: create, list and revoke a workspace's API keys.

The operator may revoke a workspace's last admin key with `--force` (the API refuses it):
after a leak, the way back is `tgrelay api-key create --scope admin`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from tgrelay.cli import invocation, output

if TYPE_CHECKING:
    from tgrelay.runtime import Runtime
    from tgrelay.workspaces.models import ApiKey

app = invocation.group("A workspace's API keys.")

WorkspaceOption = Annotated[str, typer.Option("--workspace", "-w", help="workspace id (ws_…)")]
JsonOption = Annotated[bool, typer.Option("--json", help=output.JSON_HELP)]
SCOPES = ("admin", "read")


def _record(key: ApiKey) -> dict[str, str | None]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scope": key.scope.value,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
    }


@app.command("create")
def create(
    workspace: WorkspaceOption,
    name: Annotated[str, typer.Option("--name", help="what the key is for, e.g. 'CI deploys'")],
    scope: Annotated[str, typer.Option("--scope", help="admin (changes anything) or read")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Create an API key and print it (shown once)."""
    if scope not in SCOPES:
        raise invocation.fail(f"--scope must be one of {', '.join(SCOPES)}, not {scope!r}")

    async def use(rt: Runtime) -> tuple[ApiKey, str]:
        from tgrelay.workspaces import keys
        from tgrelay.workspaces import service as workspaces
        from tgrelay.workspaces.models import KeyScope

        principal = await workspaces.operator(rt.db, workspace)
        return await keys.create(rt.db, principal, name=name, scope=KeyScope(scope), now=rt.clock())

    key, plaintext = invocation.with_runtime(use)
    if as_json:
        typer.echo(json.dumps({**_record(key), "key": plaintext}))
        return
    typer.echo(f"id:      {key.id}")
    typer.echo(f"scope:   {key.scope.value}")
    typer.echo(f"api_key: {plaintext}")
    typer.secho("Store the API key now: it is not shown again.", fg="yellow", err=True)


@app.command("list")
def list_(workspace: WorkspaceOption, as_json: JsonOption = False) -> None:
    """List a workspace's live API keys (never the keys themselves), oldest first."""

    async def use(rt: Runtime) -> list[ApiKey]:
        from tgrelay.workspaces import keys
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        return await keys.list_keys(rt.db, principal.workspace_id)

    found = [_record(key) for key in invocation.with_runtime(use)]
    if as_json:
        output.json_array(found)
        return
    columns = ("id", "name", "scope", "created_at", "last_used_at")
    output.table(columns, [tuple(r[c] or "—" for c in columns) for r in found])


@app.command("revoke")
def revoke(
    workspace: WorkspaceOption,
    key_id: Annotated[str, typer.Argument(help="the key's id (tgr_…), as `list` shows it")],
    force: Annotated[
        bool, typer.Option("--force", help="revoke even the workspace's last admin key")
    ] = False,
) -> None:
    """Revoke an API key at once; its web UI sessions end with it."""

    async def use(rt: Runtime) -> ApiKey:
        from tgrelay.workspaces import keys
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        return await keys.revoke(rt.db, principal, key_id, now=rt.clock(), force=force)

    key = invocation.with_runtime(use)
    typer.echo(f"revoked {key.id} ({key.name}, {key.scope.value})")
