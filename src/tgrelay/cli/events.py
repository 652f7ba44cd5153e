"""`tgrelay events catalog` and `tgrelay deliveries …`: the event types, and an endpoint's
deliveries (list them, replay them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from tgrelay.cli import invocation, output
from tgrelay.events.models import DeliveryStatus

if TYPE_CHECKING:
    from tgrelay.events.models import Delivery
    from tgrelay.runtime import Runtime

events_app = invocation.group("The events tgrelay sends to webhook endpoints.")
deliveries_app = invocation.group("An endpoint's deliveries: list them, send them again.")

WorkspaceOption = Annotated[str, typer.Option("--workspace", "-w", help="workspace id (ws_…)")]
EndpointOption = Annotated[str, typer.Option("--endpoint", "-e", help="endpoint id (ep_…)")]


@events_app.command("catalog")
def catalog(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="print Markdown, as in docs/events.md")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print JSON: each type with its schema and example")
    ] = False,
) -> None:
    """Every event type tgrelay sends: a summary, or the whole catalog as Markdown or JSON."""
    if markdown and as_json:
        raise typer.BadParameter("choose one of --markdown and --json")
    if markdown or as_json:
        from tgrelay.events import reference

        if markdown:
            typer.echo(reference.catalog_markdown(), nl=False)
        else:
            typer.echo(json.dumps(reference.catalog_json(), indent=2, ensure_ascii=False))
        return
    from tgrelay.events.catalog import CATALOG

    output.table(
        ("type", "description"),
        [
            (spec.type.value, spec.description + (" (reserved)" if spec.reserved else ""))
            for spec in CATALOG
        ],
    )


def _instant(value: str) -> datetime:
    """An ISO 8601 date or time; one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@deliveries_app.command("list")
def list_deliveries(
    workspace: WorkspaceOption,
    endpoint: EndpointOption,
    status: Annotated[DeliveryStatus | None, typer.Option(help="only these")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help=output.JSON_HELP)] = False,
) -> None:
    """An endpoint's deliveries, newest first."""

    async def use(rt: Runtime) -> list[Delivery]:
        from tgrelay.events import service
        from tgrelay.workspaces import service as workspaces

        principal = await workspaces.operator(rt.db, workspace)
        return await service.list_deliveries(
            rt, principal.workspace_id, endpoint, status=status, before=None, limit=limit
        )

    found = invocation.with_runtime(use)
    if as_json:
        from tgrelay.events.api import DeliveryView

        output.json_array([DeliveryView.of(d).model_dump(mode="json") for d in found])
        return
    output.table(
        ("id", "event", "type", "status", "tries", "last answer", "created (UTC)"),
        [
            (
                d.public_id,
                d.event_id,
                d.event_type,
                d.status.value,
                str(d.attempts),
                str(d.last_status_code or d.last_error or ""),
                f"{d.created_at:%Y-%m-%d %H:%M:%S}",
            )
            for d in found
        ],
        fold=("event",),  # the whole event id, to be copied, even when narrow
    )


@deliveries_app.command("replay")
def replay(
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
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("queueing deliveries", total=None)

        async def use(rt: Runtime) -> int:
            from tgrelay.events import service
            from tgrelay.workspaces import service as workspaces

            return await service.replay(
                rt,
                await workspaces.operator(rt.db, workspace),
                endpoint,
                since=since,
                until=until,
                status=None if status is None else DeliveryStatus(status),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )

        queued = invocation.with_runtime(use)
    noun = "delivery" if queued == 1 else "deliveries"
    typer.echo(f"queued {queued} {noun} of {endpoint} to be sent again")
