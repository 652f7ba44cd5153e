"""The web UI's bots page: connect a bot by its token, see each bot's health and what to do
about it, rotate its token, reconnect, disconnect, check its health now.

Tokens only come in (form posts); the page shows fingerprints. After an action the browser
is redirected to the list, which reads the bot back to say how it went.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors
from tgrelay.bots import rules
from tgrelay.bots import service as bots
from tgrelay.runtime import Runtime
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)

# "123456789:AAE…": up to 20 digits, a colon and 35 characters today (as the API allows).
TOKEN_MAX_LENGTH = 128
# What the list says after each action (the redirect's `done`), before the bot's status.
DONE = {
    "connected": "connected",
    "rotated": "token rotated",
    "reconnected": "reconnected",
    "disconnected": "disconnected",
    "checked": "health checked",
}
# How each refusal answers: Telegram refusing a token is the form's fault, not ours.
STATUS_OF = [
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InvalidInput, 422),
    (errors.TelegramUnauthorized, 422),
    (errors.TelegramError, 502),
]
Refusal = (errors.NotFound, errors.Conflict, errors.InvalidInput, errors.TelegramError)


def status_of(exc: errors.TgrelayError) -> int:
    return next(status for kind, status in STATUS_OF if isinstance(exc, kind))


@router.get("/ui/bots")
async def bots_page(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    done: str | None = None,
    bot: int | None = None,
) -> Response:
    notice = None
    if done in DONE and bot is not None:
        # The redirect names the bot; its status is read back, never echoed.
        try:
            found = await bots.get_bot(rt, principal.workspace_id, bot)
        except errors.NotFound:
            pass
        else:
            notice = f"@{found.username}: {DONE[done]}, now {found.status.value.replace('_', ' ')}"
    return await _bots(request, rt, principal.workspace_id, notice=notice)


@router.post("/ui/bots")
async def connect_bot(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    token: Annotated[str, Form(max_length=TOKEN_MAX_LENGTH)] = "",
) -> Response:
    try:
        bot = await bots.connect(rt, principal, token.strip())
    except Refusal as exc:
        return await _refused(request, rt, principal.workspace_id, "No bot connected", exc)
    return _done("connected", bot.id)


@router.post("/ui/bots/{bot_id}/rotate")
async def rotate_token(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    bot_id: int,
    token: Annotated[str, Form(max_length=TOKEN_MAX_LENGTH)] = "",
) -> Response:
    try:
        await bots.rotate_token(rt, principal, bot_id, token.strip())
    except Refusal as exc:
        return await _refused(request, rt, principal.workspace_id, "Token not rotated", exc)
    return _done("rotated", bot_id)


@router.post("/ui/bots/{bot_id}/reconnect")
async def reconnect(request: Request, rt: pages.Rt, principal: SignedIn, bot_id: int) -> Response:
    try:
        await bots.reconnect(rt, principal, bot_id)
    except Refusal as exc:
        return await _refused(request, rt, principal.workspace_id, "Not reconnected", exc)
    return _done("reconnected", bot_id)


@router.post("/ui/bots/{bot_id}/disconnect")
async def disconnect(request: Request, rt: pages.Rt, principal: SignedIn, bot_id: int) -> Response:
    try:
        await bots.disconnect(rt, principal, bot_id)
    except Refusal as exc:
        return await _refused(request, rt, principal.workspace_id, "Not disconnected", exc)
    return _done("disconnected", bot_id)


@router.post("/ui/bots/{bot_id}/check")
async def check_health(
    request: Request, rt: pages.Rt, principal: SignedIn, bot_id: int
) -> Response:
    try:
        await bots.get_bot(rt, principal.workspace_id, bot_id)  # another workspace's is absent
        await bots.check_health(rt, bot_id, actor=principal.actor)
    except Refusal as exc:
        return await _refused(request, rt, principal.workspace_id, "Not checked", exc)
    return _done("checked", bot_id)


# --- rendering -----------------------------------------------------------------------------


def _done(what: str, bot_id: int) -> RedirectResponse:
    return RedirectResponse(f"/ui/bots?done={what}&bot={bot_id}", status_code=303)


async def _refused(
    request: Request, rt: Runtime, workspace_id: str, what: str, exc: errors.TgrelayError
) -> Response:
    return await _bots(
        request, rt, workspace_id, status_code=status_of(exc), error=f"{what}: {exc.message}"
    )


async def _bots(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    found = await bots.list_bots(rt, workspace_id)
    return pages.render(
        request,
        "bots.html",
        status_code=status_code,
        bots=[(bot, rules.advise(bot)) for bot in found],
        mode="webhook" if rt.settings.uses_webhooks else "polling",
        notice=notice,
        error=error,
    )
