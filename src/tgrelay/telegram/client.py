"""Bot API calls through aiogram, with its errors translated into ours and every call counted.

One aiohttp session serves every bot; a `TelegramClients` pool is opened and closed by the
app's lifespan. Tokens live only inside aiogram's `Bot`; errors we raise carry no token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiogram import Bot
from aiogram import exceptions as aiogram_errors
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
    WebhookInfo,
)
from aiogram.utils.token import TokenValidationError

from tgrelay import crypto, errors
from tgrelay.observability import Metrics

T = TypeVar("T")

# Bot API calls other than long polling should answer fast; a stuck call holds a worker slot.
CALL_TIMEOUT_SECONDS = 15


@dataclass(frozen=True, kw_only=True)
class BotIdentity:
    """What getMe says about a bot."""

    id: int
    username: str
    first_name: str


class TelegramClient:
    """The Bot API as one bot sees it."""

    def __init__(self, bot: Bot, metrics: Metrics) -> None:
        self._bot = bot
        self._metrics = metrics

    @property
    def bot_id(self) -> int:
        return self._bot.id

    async def get_me(self) -> BotIdentity:
        me = await self._call("getMe", self._bot.get_me(request_timeout=CALL_TIMEOUT_SECONDS))
        return BotIdentity(id=me.id, username=me.username or "", first_name=me.first_name)

    async def set_webhook(
        self,
        *,
        url: str,
        secret_token: str,
        allowed_updates: Sequence[str],
        max_connections: int = 40,
    ) -> None:
        await self._call(
            "setWebhook",
            self._bot.set_webhook(
                url=url,
                secret_token=secret_token,
                allowed_updates=list(allowed_updates),
                max_connections=max_connections,
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def delete_webhook(self, *, drop_pending_updates: bool = False) -> None:
        await self._call(
            "deleteWebhook",
            self._bot.delete_webhook(
                drop_pending_updates=drop_pending_updates, request_timeout=CALL_TIMEOUT_SECONDS
            ),
        )

    async def get_webhook_info(self) -> WebhookInfo:
        return await self._call(
            "getWebhookInfo", self._bot.get_webhook_info(request_timeout=CALL_TIMEOUT_SECONDS)
        )

    async def get_updates(
        self, *, offset: int | None, timeout: int, limit: int, allowed_updates: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Raw update bodies, as the webhook would have received them."""
        updates: list[Update] = await self._call(
            "getUpdates",
            self._bot.get_updates(
                offset=offset,
                limit=limit,
                timeout=timeout,
                allowed_updates=list(allowed_updates),
                request_timeout=timeout + CALL_TIMEOUT_SECONDS,
            ),
        )
        # exclude_unset reproduces the received JSON, extra fields aiogram doesn't know included.
        return [u.model_dump(mode="json", exclude_unset=True, by_alias=True) for u in updates]

    async def send_message(
        self,
        *,
        chat_id: int,
        text: str,
        parse_mode: str | None = None,
        message_thread_id: int | None = None,
        url_buttons: Sequence[tuple[str, str]] = (),
    ) -> Message:
        """Send a text; `url_buttons` become an inline keyboard, one (label, url) per row."""
        keyboard = (
            InlineKeyboardMarkup(
                inline_keyboard=[
                    [InlineKeyboardButton(text=label, url=url)] for label, url in url_buttons
                ]
            )
            if url_buttons
            else None
        )
        return await self._call(
            "sendMessage",
            self._bot.send_message(
                chat_id=chat_id,
                text=text,
                parse_mode=parse_mode,
                message_thread_id=message_thread_id,
                reply_markup=keyboard,
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def create_forum_topic(self, *, chat_id: int, name: str) -> int:
        """Create a topic in a forum supergroup; its message_thread_id."""
        topic = await self._call(
            "createForumTopic",
            self._bot.create_forum_topic(
                chat_id=chat_id, name=name, request_timeout=CALL_TIMEOUT_SECONDS
            ),
        )
        return topic.message_thread_id

    async def _call(self, method: str, call: Awaitable[T]) -> T:
        try:
            result = await call
        except aiogram_errors.TelegramAPIError as exc:
            error = translate(exc, method)
            self._metrics.telegram_calls.labels(method, type(error).__name__).inc()
            raise error from None
        except (TimeoutError, OSError) as exc:
            self._metrics.telegram_calls.labels(method, "TelegramUnavailable").inc()
            raise errors.TelegramUnavailable(
                f"{method}: {type(exc).__name__}", method=method
            ) from None
        self._metrics.telegram_calls.labels(method, "ok").inc()
        return result


def translate(exc: aiogram_errors.TelegramAPIError, method: str) -> errors.TelegramError:
    """Our error for aiogram's, carrying what a caller needs; the message has no token."""
    message = crypto.redact_tokens(f"{method}: {exc.message}")
    match exc:
        case aiogram_errors.TelegramUnauthorizedError() | aiogram_errors.TelegramNotFound():
            # 404 is what Telegram answers for a malformed token.
            return errors.TelegramUnauthorized(message, method=method)
        case aiogram_errors.TelegramConflictError():
            return errors.TelegramConflict(message, method=method)
        case aiogram_errors.TelegramRetryAfter():
            return errors.TelegramRetryAfter(message, method=method, retry_after=exc.retry_after)
        case aiogram_errors.TelegramMigrateToChat():
            return errors.TelegramBadRequest(
                message, method=method, migrate_to_chat_id=exc.migrate_to_chat_id
            )
        case aiogram_errors.TelegramBadRequest():
            return errors.TelegramBadRequest(message, method=method)
        case aiogram_errors.TelegramForbiddenError():
            return errors.TelegramForbidden(message, method=method)
        case aiogram_errors.TelegramNetworkError() | aiogram_errors.TelegramServerError():
            return errors.TelegramUnavailable(message, method=method)
        case _:
            return errors.TelegramError(message, method=method)


class TelegramClients:
    """Clients for many bots over one HTTP session; opened and closed by the app's lifespan."""

    def __init__(self, api_url: str, metrics: Metrics) -> None:
        self._session = AiohttpSession(api=TelegramAPIServer.from_base(api_url))
        self._metrics = metrics
        self._bots: dict[str, Bot] = {}

    def for_token(self, token: str) -> TelegramClient:
        """A client for a token; raises InvalidInput for a string that cannot be a token."""
        bot = self._bots.get(token)
        if bot is None:
            try:
                bot = Bot(token, session=self._session)
            except TokenValidationError:
                raise errors.InvalidInput(
                    "that is not a bot token (expected 123456:ABC…)"
                ) from None
            self._bots[token] = bot
        return TelegramClient(bot, self._metrics)

    def forget(self, token: str) -> None:
        self._bots.pop(token, None)

    async def aclose(self) -> None:
        self._bots.clear()
        await self._session.close()
        # aiohttp closes its connector's transports on the next loop iteration.
        await asyncio.sleep(0)
