"""A workspace's flows: versions posted, listed and disabled (POST /v1/flows and the pages).

Posting a name new in the workspace stores version 1, an existing name the next version; a
document identical to the newest enabled version stores nothing and returns it. Two enabled
flows may not share a trigger (a command, a deep link's start parameter, a callback's data):
the second is refused naming the first. Disabling stops new conversations only; posting the
flow again stores a new, enabled version.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, errors
from tgrelay.conversations import call_targets, checks, store
from tgrelay.conversations.flow import CallbackTrigger, CommandTrigger, DeepLinkTrigger, Flow
from tgrelay.runtime import Runtime
from tgrelay.workspaces.models import Principal

# A flow is at most 200 steps of a few templates of up to 4096 characters; 1 MiB holds the
# largest useful one with room, and keeps a request from filling the database.
MAX_DOCUMENT_BYTES = 1024 * 1024
# `GET /v1/flows/schema` serves the JSON Schema, so no flow may take the name.
RESERVED_NAMES = frozenset(("schema",))


@dataclass(frozen=True, kw_only=True)
class FlowVersion:
    """One stored version of a flow, as the API and the pages show it."""

    id: str
    name: str
    version: int
    trigger: dict[str, Any]  # the document's trigger object
    document: dict[str, Any]  # as posted
    created_at: datetime
    disabled_at: datetime | None
    enabled: bool  # starts new conversations: the newest version, not disabled

    @property
    def trigger_label(self) -> str:
        """The trigger in words: "command /billing", "deep link start=promo", "api"."""
        match self.trigger.get("type"):
            case "command":
                return f"command {self.trigger.get('command')}"
            case "deep_link":
                return f"deep link start={self.trigger.get('start')}"
            case "callback":
                return f"callback {self.trigger.get('data')}"
            case other:
                return str(other)


@dataclass(frozen=True, kw_only=True)
class FlowSummary:
    """A flow at its newest version, with how many versions it has."""

    newest: FlowVersion
    versions: int


@dataclass(frozen=True, kw_only=True)
class FlowVersions:
    """A flow's newest version and every version, newest first."""

    newest: FlowVersion
    versions: list[FlowVersion]


@dataclass(frozen=True, kw_only=True)
class Posted:
    flow: FlowVersion
    created: bool  # false: the document was the newest enabled version's; nothing stored


async def post_flow(
    rt: Runtime, principal: Principal, document: str | bytes | Mapping[str, Any]
) -> Posted:
    """Store the document as its flow's next version. FlowInvalid lists every problem;
    Conflict names the enabled flow that already starts on the same trigger."""
    if isinstance(document, (str, bytes)) and len(document) > MAX_DOCUMENT_BYTES:
        raise checks.FlowInvalid(
            [f"document: larger than {MAX_DOCUMENT_BYTES} bytes ({len(document)})"]
        )
    flow = checks.parse(document)
    if flow.name in RESERVED_NAMES:
        raise checks.FlowInvalid(
            [f'name: "{flow.name}" is reserved (GET /v1/flows/{flow.name} is the JSON Schema)']
        )
    decoded = json.loads(document) if isinstance(document, (str, bytes)) else dict(document)
    text = json.dumps(decoded, ensure_ascii=False, separators=(",", ":"))
    kind, value = trigger_key(flow)
    now = rt.clock()
    async with rt.db.transaction() as conn:
        await store.lock_flows(conn, principal.workspace_id)
        unsigned = await call_targets.unsigned(conn, rt, principal.workspace_id, flow)
        if unsigned:
            raise checks.FlowInvalid(unsigned)
        newest = await store.latest_version(conn, principal.workspace_id, flow.name)
        if (
            newest is not None
            and newest.disabled_at is None
            and Flow.model_validate_json(newest.document) == flow
        ):
            return Posted(flow=_version(newest, newest=True), created=False)
        await _refuse_shared_trigger(conn, principal.workspace_id, flow.name, kind, value)
        version = 1 if newest is None else newest.version + 1
        flow_id = f"flw_{secrets.token_hex(8)}"
        await store.add_flow(
            conn,
            {
                "id": flow_id,
                "workspace_id": principal.workspace_id,
                "name": flow.name,
                "version": version,
                "document": text,
                "trigger_kind": kind,
                "trigger_value": value,
                "created_at": now,
                "disabled_at": None,
            },
        )
        await audit.record(
            conn,
            action="flow.created",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            detail={"flow_id": flow_id, "name": flow.name, "version": version},
        )
        stored = await store.flow_by_id(conn, flow_id)
    assert stored is not None
    return Posted(flow=_version(stored, newest=True), created=True)


def trigger_key(flow: Flow) -> tuple[str, str | None]:
    """The trigger as the flows table keys it: (kind, command | start | data | None)."""
    trigger = flow.trigger
    if isinstance(trigger, CommandTrigger):
        return "command", trigger.command
    if isinstance(trigger, DeepLinkTrigger):
        return "deep_link", trigger.start
    if isinstance(trigger, CallbackTrigger):
        return "callback", trigger.data
    return "api", None


async def _refuse_shared_trigger(
    conn: AsyncConnection, workspace_id: str, name: str, kind: str, value: str | None
) -> None:
    if kind == "api":
        return  # started only by the API, by name: any number of flows may be
    for other in await store.list_latest(conn, workspace_id):
        if (
            other.name != name
            and other.disabled_at is None
            and (other.trigger_kind, other.trigger_value) == (kind, value)
        ):
            raise errors.Conflict(
                f"flow {other.name} (version {other.version}) already starts on the "
                f"{kind.replace('_', ' ')} {value}; disable it or choose another trigger"
            )


async def list_flows(rt: Runtime, workspace_id: str) -> list[FlowSummary]:
    """Each flow at its newest version, by name."""
    async with rt.db.engine.connect() as conn:
        newest = await store.list_latest(conn, workspace_id)
        counts = await store.version_counts(conn, workspace_id)
    return [
        FlowSummary(newest=_version(found, newest=True), versions=counts.get(found.name, 1))
        for found in newest
    ]


async def get_flow(rt: Runtime, workspace_id: str, name: str) -> FlowVersions:
    async with rt.db.engine.connect() as conn:
        found = await store.versions(conn, workspace_id, name)
    if not found:
        raise errors.NotFound(f"no flow {name}")
    shown = [_version(row, newest=index == 0) for index, row in enumerate(found)]
    return FlowVersions(newest=shown[0], versions=shown)


async def get_version(rt: Runtime, workspace_id: str, name: str, version: int) -> FlowVersion:
    async with rt.db.engine.connect() as conn:
        found = await store.flow_version(conn, workspace_id, name, version)
        newest = await store.latest_version(conn, workspace_id, name)
    if found is None or newest is None:
        raise errors.NotFound(f"no version {version} of flow {name}")
    return _version(found, newest=found.id == newest.id)


async def disable_flow(rt: Runtime, principal: Principal, name: str) -> FlowVersion:
    """Stop the flow's newest version starting conversations (running ones go on); a flow
    already disabled stays as it is."""
    now = rt.clock()
    async with rt.db.transaction() as conn:
        newest = await store.latest_version(conn, principal.workspace_id, name)
        if newest is None:
            raise errors.NotFound(f"no flow {name}")
        if newest.disabled_at is None:
            await store.disable_flow(conn, newest.id, now)
            await audit.record(
                conn,
                action="flow.disabled",
                actor=principal.actor,
                now=now,
                workspace_id=principal.workspace_id,
                detail={"flow_id": newest.id, "name": name, "version": newest.version},
            )
            newest = await store.flow_by_id(conn, newest.id)
            assert newest is not None
    return _version(newest, newest=True)


def _version(row: store.StoredFlow, *, newest: bool) -> FlowVersion:
    document: dict[str, Any] = json.loads(row.document)
    return FlowVersion(
        id=row.id,
        name=row.name,
        version=row.version,
        trigger=dict(document.get("trigger") or {}),
        document=document,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
        enabled=newest and row.disabled_at is None,
    )
