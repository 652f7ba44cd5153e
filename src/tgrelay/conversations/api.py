"""HTTP routes of conversations: /v1/flows (post versions, read, disable, the JSON Schema)
and /v1/conversations (lists and one conversation with its history)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from tgrelay import problems
from tgrelay.conversations import checks, history, registry
from tgrelay.conversations.models import AbandonReason, Status
from tgrelay.conversations.schema import flow_schema
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import service as workspaces

router = APIRouter(tags=["conversations"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal


class FlowView(BaseModel):
    name: str
    version: int
    trigger: dict[str, Any]  # the document's trigger
    document: dict[str, Any]  # as posted
    created_at: datetime
    # Starts new conversations: the newest version, not disabled. Running ones go on anyway.
    enabled: bool
    disabled_at: datetime | None

    @classmethod
    def of(cls, flow: registry.FlowVersion) -> FlowView:
        return cls(
            name=flow.name,
            version=flow.version,
            trigger=flow.trigger,
            document=flow.document,
            created_at=flow.created_at,
            enabled=flow.enabled,
            disabled_at=flow.disabled_at,
        )


class FlowListItem(FlowView):
    versions: int  # how many versions the flow has


class VersionView(BaseModel):
    version: int
    trigger: dict[str, Any]
    created_at: datetime
    enabled: bool
    disabled_at: datetime | None


class FlowDetail(FlowView):
    versions: list[VersionView]  # newest first


class FlowProblem(BaseModel):
    """422 for a flow document that is not valid: every problem, each naming its place."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[str]  # e.g. `steps[2] (id "zip").input.pattern: not a valid regex: …`


@router.post(
    "/v1/flows",
    status_code=status.HTTP_201_CREATED,
    response_model=FlowView,
    responses={
        200: {"model": FlowView, "description": "the document is the newest version's"},
        409: {"description": "an enabled flow already starts on the same trigger"},
        413: {"description": f"larger than {registry.MAX_DOCUMENT_BYTES} bytes"},
        422: {"model": FlowProblem, "description": "the document is not a valid flow"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "A flow document; its JSON Schema is GET /v1/flows/schema.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def post_flow(request: Request, principal: AdminPrincipal, rt: CurrentRuntime) -> Response:
    """Store the document as version 1 of a new name or the next version of its name; the
    newest version's own document again is 200 with it, storing nothing."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > registry.MAX_DOCUMENT_BYTES:
            return problems.problem(
                413,
                "PayloadTooLarge",
                f"a flow document is at most {registry.MAX_DOCUMENT_BYTES} bytes",
            )
    try:
        posted = await registry.post_flow(rt, principal, bytes(body))
    except checks.FlowInvalid as exc:
        count = len(exc.problems)
        return problems.problem(
            422,
            "FlowInvalid",
            f"the flow is not valid: {count} problem{'s' if count > 1 else ''}",
            errors=list(exc.problems),
        )
    return JSONResponse(
        FlowView.of(posted.flow).model_dump(mode="json"),
        status_code=status.HTTP_201_CREATED if posted.created else status.HTTP_200_OK,
    )


@router.get("/v1/flows")
async def list_flows(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[FlowListItem]:
    """Each flow at its newest version, by name."""
    return [
        FlowListItem(**FlowView.of(found.newest).model_dump(), versions=found.versions)
        for found in await registry.list_flows(rt, principal.workspace_id)
    ]


@router.get("/v1/flows/schema")
async def get_flow_schema() -> dict[str, Any]:
    """The flow document's JSON Schema (draft 2020-12), the same as docs/flow.schema.json.
    Public: it describes the product, not a workspace."""
    return flow_schema()


@router.get("/v1/flows/{name}")
async def get_flow(name: str, principal: CurrentPrincipal, rt: CurrentRuntime) -> FlowDetail:
    """The newest version, and every version newest first."""
    found = await registry.get_flow(rt, principal.workspace_id, name)
    return FlowDetail(
        **FlowView.of(found.newest).model_dump(),
        versions=[
            VersionView(
                version=v.version,
                trigger=v.trigger,
                created_at=v.created_at,
                enabled=v.enabled,
                disabled_at=v.disabled_at,
            )
            for v in found.versions
        ],
    )


@router.get("/v1/flows/{name}/versions/{version}")
async def get_flow_version(
    name: str, version: int, principal: CurrentPrincipal, rt: CurrentRuntime
) -> FlowView:
    return FlowView.of(await registry.get_version(rt, principal.workspace_id, name, version))


@router.delete("/v1/flows/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def disable_flow(name: str, principal: AdminPrincipal, rt: CurrentRuntime) -> None:
    """Disable the flow: no new conversations (running ones go on). Posting it again stores
    a new, enabled version."""
    await registry.disable_flow(rt, principal, name)


class ConversationView(BaseModel):
    id: str
    flow: str
    version: int  # the flow's version it runs, from start to end
    bot_id: int
    chat_id: int
    user_id: int
    status: Status
    step: str  # where it waits, or where it ended or stopped
    end_reason: AbandonReason | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    @classmethod
    def of(cls, found: history.Conversation) -> ConversationView:
        return cls(
            id=found.id,
            flow=found.flow,
            version=found.version,
            bot_id=found.bot_id,
            chat_id=found.chat_id,
            user_id=found.user_id,
            status=found.status,
            step=found.step,
            end_reason=found.end_reason,
            started_at=found.started_at,
            updated_at=found.updated_at,
            ended_at=found.ended_at,
        )


class TransitionView(BaseModel):
    from_: str | None = Field(serialization_alias="from")  # null: it started
    to: str | None  # null: it ended
    input: str | None  # what moved it; a sensitive step's answer is ***
    at: datetime


class ConversationDetailView(ConversationView):
    # A sensitive ask step's variable reads "***" (named in `sensitive`); the team's app
    # gets it in full in conversation.completed.
    variables: dict[str, Any]
    sensitive: list[str]
    history: list[TransitionView]  # oldest first


class ConversationPageView(BaseModel):
    conversations: list[ConversationView]
    # Pass as `before` for the next (older) page; null when this page is the last one.
    next_before: str | None


@router.get("/v1/conversations")
async def list_conversations(
    principal: CurrentPrincipal,
    rt: CurrentRuntime,
    flow: Annotated[str | None, Query(max_length=100, description="a flow's name")] = None,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    before: Annotated[
        str | None, Query(max_length=40, description="a conversation id (from next_before)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=history.MAX_PAGE)] = 50,
) -> ConversationPageView:
    """The workspace's conversations, newest first."""
    page = await history.list_conversations(
        rt, principal.workspace_id, flow=flow, status=status_, before=before, limit=limit
    )
    return ConversationPageView(
        conversations=[ConversationView.of(c) for c in page.conversations],
        next_before=page.next_before,
    )


@router.get("/v1/conversations/{conversation_id}")
async def get_conversation(
    conversation_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> ConversationDetailView:
    """The conversation, its variables and every transition."""
    found = await history.get_conversation(rt, principal.workspace_id, conversation_id)
    return ConversationDetailView(
        **ConversationView.of(found.conversation).model_dump(),
        variables=found.variables,
        sensitive=found.sensitive,
        history=[
            TransitionView(from_=move.from_step, to=move.to_step, input=move.input, at=move.at)
            for move in found.history
        ],
    )
