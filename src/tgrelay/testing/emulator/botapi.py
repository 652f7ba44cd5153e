"""The Bot API surface: `/bot<token>/<method>`, answered in Telegram's shapes and words."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tgrelay.testing.emulator import (
    business,
    callbacks,
    chatinfo,
    copies,
    edits,
    errors,
    longpoll,
    media,
    objects,
    outgoing,
    text,
    topics,
    updates,
)
from tgrelay.testing.emulator.calls import Answer, Call, Method
from tgrelay.testing.emulator.params import Params

if TYPE_CHECKING:
    from tgrelay.testing.emulator.service import Emulator

_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]*")
MAX_SECRET_TOKEN_LENGTH = 256
MAX_POLL_TIMEOUT = 50  # seconds; Telegram clamps longer getUpdates timeouts to this


def json_response(body: Any, status_code: int = 200) -> Response:
    return Response(objects.encode(body), status_code=status_code, media_type="application/json")


def error_response(error: errors.BotApiError) -> Response:
    return json_response(error.body(), status_code=error.code)


def routes(emulator: Emulator) -> list[Route]:
    async def endpoint(request: Request) -> Response:
        token = request.path_params["token"]
        name = request.path_params["method"].lower()
        await emulator.travel()
        try:
            bot = emulator.state.authenticate(token)
            method = METHODS.get(name)
            if method is None:
                raise errors.not_found()
            params = await Params.read(request)
            answer = await method(Call(emulator=emulator, bot=bot, token=token, params=params))
        except errors.BotApiError as error:
            return error_response(error)
        body: dict[str, Any] = {"ok": True, "result": answer.result}
        if answer.description is not None:
            body["description"] = answer.description
        return json_response(body)

    return [Route("/bot{token}/{method}", endpoint, methods=["GET", "POST"])]


async def get_me(call: Call) -> Answer:
    return Answer(call.bot.me_json())


async def set_webhook(call: Call) -> Answer:
    params = call.params
    drop = params.flag("drop_pending_updates")
    url = params.text("url") or ""
    if not url:
        _apply_allowed_updates(call)
        had = call.emulator.delete_webhook(call.bot.id, drop_pending_updates=drop)
        return Answer(True, "Webhook was deleted" if had else "Webhook is already deleted")
    parts = urlsplit(url)
    # Telegram demands HTTPS on ports 443/80/88/8443; the emulator also takes plain HTTP
    # and any port, so that receivers on loopback work.
    if parts.scheme not in {"http", "https"}:
        raise errors.bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    if not parts.hostname:
        raise errors.bad_request("invalid webhook URL specified")
    secret = params.text("secret_token")
    if secret is not None:
        if len(secret) > MAX_SECRET_TOKEN_LENGTH:
            raise errors.bad_request("secret token must be at most 256 bytes long")
        if not _SECRET_TOKEN.fullmatch(secret):
            raise errors.bad_request("secret token contains unallowed characters")
    max_connections = params.integer("max_connections", 40, low=1, high=100)
    _apply_allowed_updates(call)
    changed = call.emulator.set_webhook(
        call.bot.id,
        url,
        secret_token=secret,
        max_connections=max_connections,
        drop_pending_updates=drop,
    )
    return Answer(True, "Webhook was set" if changed else "Webhook is already set")


async def delete_webhook(call: Call) -> Answer:
    drop = call.params.flag("drop_pending_updates")
    had = call.emulator.delete_webhook(call.bot.id, drop_pending_updates=drop)
    return Answer(True, "Webhook was deleted" if had else "Webhook is already deleted")


async def get_webhook_info(call: Call) -> Answer:
    return Answer(call.emulator.webhook_info(call.bot.id))


async def get_updates(call: Call) -> Answer:
    emulator, params = call.emulator, call.params
    if emulator.webhook_of(call.bot.id) is not None:
        raise errors.conflict(errors.WEBHOOK_ACTIVE)
    emulator.polls.preempt(call.bot.id)
    offset = params.integer("offset", 0, low=-(2**31), high=2**31 - 1)
    limit = params.integer("limit", 100, low=1, high=100)
    timeout = params.integer("timeout", 0, low=0, high=MAX_POLL_TIMEOUT)
    _apply_allowed_updates(call)
    batch = emulator.state.take(call.bot.id, offset=offset, limit=limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not batch and (remaining := deadline - loop.time()) > 0:
        outcome = await emulator.polls.wait(call.bot.id, remaining)
        if outcome is longpoll.Outcome.TERMINATED:
            raise errors.conflict(errors.OTHER_POLLER)
        # The world may have changed while waiting: a revoked token, a webhook.
        emulator.state.authenticate(call.token)
        if emulator.webhook_of(call.bot.id) is not None:
            raise errors.conflict(errors.WEBHOOK_ACTIVE)
        batch = emulator.state.take(call.bot.id, offset=offset, limit=limit)
        if outcome is longpoll.Outcome.CLOSED:
            break
    return Answer(batch)


async def send_message(call: Call) -> Answer:
    params, state = call.params, call.emulator.state
    chat_id = params.chat_id()
    connection_id = params.text("business_connection_id")
    if connection_id is None:
        state.resolve_chat(call.bot.id, chat_id)
    entities = params.json("entities", "entities")
    if entities is not None and not isinstance(entities, list):
        raise errors.bad_request("can't parse entities JSON object")
    message_text, entities = text.outgoing(
        params.text("text") or "", params.text("parse_mode"), entities
    )
    content = {"text": message_text, "entities": entities}
    if connection_id is not None:
        return Answer(business.send(call, connection_id, chat_id, content))
    options = outgoing.options(params)
    message = state.bot_message(
        call.bot.id,
        chat_id,
        content,
        reply_markup=options.reply_markup,
        link_preview_options=outgoing.link_preview_options(params),
        message_thread_id=options.message_thread_id,
        reply_to_message_id=options.reply_to_message_id,
        allow_sending_without_reply=options.allow_sending_without_reply,
    )
    return Answer(message)


def _apply_allowed_updates(call: Call) -> None:
    """setWebhook and getUpdates both change the bot's allowed_updates when they name it."""
    allowed = call.params.json("allowed_updates", "allowed updates")
    if allowed is None:
        return
    if not isinstance(allowed, list) or not all(isinstance(kind, str) for kind in allowed):
        raise errors.bad_request("can't parse allowed updates JSON object")
    call.emulator.state.set_allowed_updates(call.bot.id, updates.normalize_allowed(allowed))


# Telegram matches method names case-insensitively.
METHODS: dict[str, Method] = {
    "getme": get_me,
    "setwebhook": set_webhook,
    "deletewebhook": delete_webhook,
    "getwebhookinfo": get_webhook_info,
    "getupdates": get_updates,
    "sendmessage": send_message,
    "copymessage": copies.copy_message,
    "editmessagetext": edits.edit_message_text,
    "editmessagereplymarkup": edits.edit_message_reply_markup,
    "answercallbackquery": callbacks.answer_callback_query,
    **media.METHODS,
    **topics.METHODS,
    **chatinfo.METHODS,
}
