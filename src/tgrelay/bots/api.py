"""HTTP routes for a workspace's bots; tokens come in, only fingerprints go out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tgrelay.bots import service
from tgrelay.bots.models import BotMode, BotStatus, ConflictKind, ConnectedBot
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import service as workspaces

router = APIRouter(prefix="/v1/bots", tags=["bots"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal


class TokenRequest(BaseModel):
    """A bot token as BotFather shows it."""

    model_config = ConfigDict(extra="forbid")

    # "123456789:AAE…": up to 20 digits, a colon and 35 characters today; room to grow.
    token: SecretStr = Field(min_length=10, max_length=128)


class ConnectRequest(TokenRequest):
    """A bot token, and whether to take the bot from another workspace that has it connected."""

    take_over: bool = False


class BotView(BaseModel):
    """A connected bot as the API shows it: never the token or a webhook secret."""

    id: int
    username: str
    first_name: str
    token_fingerprint: str
    mode: BotMode
    status: BotStatus
    conflict_kind: ConflictKind | None
    webhook_url: str | None
    last_error_message: str | None
    last_error_at: datetime | None
    last_checked_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, bot: ConnectedBot) -> BotView:
        # Reads only the fields declared here, so workspace_id and the secret generation stay out.
        return cls.model_validate(bot, from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Connect a bot by its token")
async def connect_bot(
    body: ConnectRequest, principal: AdminPrincipal, rt: CurrentRuntime
) -> BotView:
    """Connect a bot (or reconnect one this workspace connected before).

    A bot connected in another workspace answers 409 unless `take_over` is true: then it
    is disconnected there (reason "taken over") and connected here.
    """
    bot = await service.connect(
        rt, principal, body.token.get_secret_value(), take_over=body.take_over
    )
    return BotView.of(bot)


@router.get("", summary="List the workspace's bots")
async def list_bots(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[BotView]:
    return [BotView.of(bot) for bot in await service.list_bots(rt, principal.workspace_id)]


@router.get("/{bot_id}", summary="One bot")
async def get_bot(bot_id: int, principal: CurrentPrincipal, rt: CurrentRuntime) -> BotView:
    return BotView.of(await service.get_bot(rt, principal.workspace_id, bot_id))


@router.put("/{bot_id}/token", summary="Replace the bot's token")
async def rotate_token(
    bot_id: int, body: TokenRequest, principal: AdminPrincipal, rt: CurrentRuntime
) -> BotView:
    """Store a new token of the same bot (e.g. after revoking the old one in BotFather)."""
    bot = await service.rotate_token(rt, principal, bot_id, body.token.get_secret_value())
    return BotView.of(bot)


@router.delete("/{bot_id}", summary="Disconnect the bot")
async def disconnect_bot(bot_id: int, principal: AdminPrincipal, rt: CurrentRuntime) -> BotView:
    """Stop receiving the bot's updates; the bot stays listed as disconnected."""
    return BotView.of(await service.disconnect(rt, principal, bot_id))


@router.post("/{bot_id}/health-check", summary="Check the bot's token and webhook now")
async def check_health(bot_id: int, principal: AdminPrincipal, rt: CurrentRuntime) -> BotView:
    await service.get_bot(rt, principal.workspace_id, bot_id)  # 404 for another workspace's id
    return BotView.of(await service.check_health(rt, bot_id, actor=principal.actor))
