"""Bot API calls through aiogram, with its errors translated into ours and every call counted.

One aiohttp session serves every bot; a `TelegramClients` pool is opened and closed by the
app's lifespan. Tokens live only inside aiogram's `Bot`; errors we raise carry no token.

Each bot has a circuit breaker (`tgrelay.breaker`, in this process's memory): after
consecutive `TelegramUnavailable` failures its calls fail fast with `TelegramCircuitOpen`
until one probe call gets an answer. Any answer, 4xx and 429 included, proves Telegram up.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from tgrelay import breaker, crypto, errors, tracing
from tgrelay.clock import Clock, utcnow
from tgrelay.telegram import aiogram_loading
from tgrelay.telegram.outbox.messages import Entity, Keyboard

if TYPE_CHECKING:
    # aiogram is imported where it is called (see `load`); these are only its types.
    from aiogram import Bot
    from aiogram import exceptions as aiogram_errors
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.types import (
        InlineKeyboardMarkup,
        Message,
        MessageEntity,
        ReplyParameters,
        Update,
        WebhookInfo,
    )

    from tgrelay.observability import Metrics

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Bot API calls other than long polling should answer fast; a stuck call holds a worker slot.
CALL_TIMEOUT_SECONDS = 15


async def load() -> None:
    """Import aiogram in a thread, off the event loop, its models built on first use.

    Even so it costs about a second of CPU on the project's machine (`aiogram_loading`);
    imported by the first call that needs it, that would stall every request of the process
    as long. Start-up serves HTTP first and runs this before anything talks to Telegram.
    """
    await asyncio.to_thread(aiogram_loading.import_aiogram)


@dataclass(frozen=True, kw_only=True)
class BotIdentity:
    """What getMe says about a bot."""

    id: int
    username: str
    first_name: str


@dataclass(frozen=True, kw_only=True)
class ChatInfo:
    """What getChat says about a chat that we use."""

    id: int
    type: str  # private | group | supergroup | channel
    title: str | None
    is_forum: bool


@dataclass(frozen=True, kw_only=True)
class MemberInfo:
    """What getChatMember says about a user in a chat that we use."""

    user_id: int
    status: str  # creator | administrator | member | restricted | left | kicked
    can_manage_topics: bool  # an owner may always; an administrator when granted


class TelegramClient:
    """The Bot API as one bot sees it."""

    def __init__(
        self,
        bot: Bot,
        metrics: Metrics,
        breakers: _Breakers,
        tracer: tracing.Tracer = tracing.NO_TRACER,
    ) -> None:
        self._bot = bot
        self._metrics = metrics
        self._breakers = breakers
        self._tracer = tracer

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
        """Raw update bodies, as the webhook would have received them.

        Not held back by an open breaker, only counted by it: the poller backs off on its own,
        and a long poll taken as the probe would hold every other call back for `timeout`.
        """
        updates: list[Update] = await self._call(
            "getUpdates",
            self._bot.get_updates(
                offset=offset,
                limit=limit,
                timeout=timeout,
                allowed_updates=list(allowed_updates),
                request_timeout=timeout + CALL_TIMEOUT_SECONDS,
            ),
            held_back=False,
        )
        # exclude_unset reproduces the received JSON, extra fields aiogram doesn't know included.
        return [u.model_dump(mode="json", exclude_unset=True, by_alias=True) for u in updates]

    async def send_message(
        self,
        *,
        chat_id: int,
        text: str,
        parse_mode: str | None = None,
        entities: Sequence[Entity] = (),
        keyboard: Keyboard | None = None,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        business_connection_id: str | None = None,
    ) -> Message:
        return await self._call(
            "sendMessage",
            self._bot.send_message(
                business_connection_id=business_connection_id,
                chat_id=chat_id,
                text=text,
                parse_mode=parse_mode,
                entities=_entities(entities),
                message_thread_id=message_thread_id,
                reply_parameters=_reply_to(reply_to_message_id),
                reply_markup=_markup(keyboard),
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def send_file(
        self,
        method: str,
        *,
        chat_id: int,
        file_id: str,
        caption: str | None = None,
        parse_mode: str | None = None,
        caption_entities: Sequence[Entity] = (),
        keyboard: Keyboard | None = None,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        business_connection_id: str | None = None,
    ) -> Message:
        """sendPhoto, sendDocument, sendVideo, sendVoice or sendSticker (`method`), by file_id;
        with `business_connection_id`, as the business account that connected the bot."""
        common: dict[str, Any] = {
            "business_connection_id": business_connection_id,
            "chat_id": chat_id,
            "message_thread_id": message_thread_id,
            "reply_parameters": _reply_to(reply_to_message_id),
            "reply_markup": _markup(keyboard),
            "request_timeout": CALL_TIMEOUT_SECONDS,
        }
        captioned = {
            **common,
            "caption": caption,
            "parse_mode": parse_mode,
            "caption_entities": _entities(caption_entities),
        }
        bot = self._bot
        calls: dict[str, Callable[[], Coroutine[Any, Any, Message]]] = {
            "sendPhoto": lambda: bot.send_photo(photo=file_id, **captioned),
            "sendDocument": lambda: bot.send_document(document=file_id, **captioned),
            "sendVideo": lambda: bot.send_video(video=file_id, **captioned),
            "sendVoice": lambda: bot.send_voice(voice=file_id, **captioned),
            "sendSticker": lambda: bot.send_sticker(sticker=file_id, **common),
        }
        if method not in calls:
            raise ValueError(f"not a file-sending method: {method}")
        return await self._call(method, calls[method]())

    async def copy_message(
        self,
        *,
        chat_id: int,
        from_chat_id: int,
        message_id: int,
        caption: str | None = None,
        parse_mode: str | None = None,
        keyboard: Keyboard | None = None,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
    ) -> int:
        """copyMessage; the id of the copy."""
        copied = await self._call(
            "copyMessage",
            self._bot.copy_message(
                chat_id=chat_id,
                from_chat_id=from_chat_id,
                message_id=message_id,
                caption=caption,
                parse_mode=parse_mode,
                message_thread_id=message_thread_id,
                reply_parameters=_reply_to(reply_to_message_id),
                reply_markup=_markup(keyboard),
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )
        return copied.message_id

    async def edit_message_text(
        self,
        *,
        chat_id: int,
        message_id: int,
        text: str,
        parse_mode: str | None = None,
        entities: Sequence[Entity] = (),
        keyboard: Keyboard | None = None,
    ) -> None:
        await self._call(
            "editMessageText",
            self._bot.edit_message_text(
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                parse_mode=parse_mode,
                entities=_entities(entities),
                reply_markup=_markup(keyboard),
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def edit_message_reply_markup(
        self, *, chat_id: int, message_id: int, keyboard: Keyboard | None
    ) -> None:
        """A new inline keyboard for a message; None removes it."""
        await self._call(
            "editMessageReplyMarkup",
            self._bot.edit_message_reply_markup(
                chat_id=chat_id,
                message_id=message_id,
                reply_markup=_markup(keyboard),
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def create_forum_topic(
        self, *, chat_id: int, name: str, icon_custom_emoji_id: str | None = None
    ) -> int:
        """Create a topic in a forum supergroup; its message_thread_id."""
        topic = await self._call(
            "createForumTopic",
            self._bot.create_forum_topic(
                chat_id=chat_id,
                name=name,
                icon_custom_emoji_id=icon_custom_emoji_id,
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )
        return topic.message_thread_id

    async def edit_forum_topic(
        self,
        *,
        chat_id: int,
        message_thread_id: int,
        name: str | None = None,
        icon_custom_emoji_id: str | None = None,
    ) -> None:
        await self._call(
            "editForumTopic",
            self._bot.edit_forum_topic(
                chat_id=chat_id,
                message_thread_id=message_thread_id,
                name=name,
                icon_custom_emoji_id=icon_custom_emoji_id,
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def close_forum_topic(self, *, chat_id: int, message_thread_id: int) -> None:
        await self._call(
            "closeForumTopic",
            self._bot.close_forum_topic(
                chat_id=chat_id,
                message_thread_id=message_thread_id,
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def reopen_forum_topic(self, *, chat_id: int, message_thread_id: int) -> None:
        await self._call(
            "reopenForumTopic",
            self._bot.reopen_forum_topic(
                chat_id=chat_id,
                message_thread_id=message_thread_id,
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def get_chat(self, chat_id: int) -> ChatInfo:
        chat = await self._call(
            "getChat", self._bot.get_chat(chat_id=chat_id, request_timeout=CALL_TIMEOUT_SECONDS)
        )
        return ChatInfo(id=chat.id, type=chat.type, title=chat.title, is_forum=bool(chat.is_forum))

    async def get_chat_member(self, chat_id: int, user_id: int) -> MemberInfo:
        member = await self._call(
            "getChatMember",
            self._bot.get_chat_member(
                chat_id=chat_id, user_id=user_id, request_timeout=CALL_TIMEOUT_SECONDS
            ),
        )
        status = _value(member.status)
        # A restricted member's can_manage_topics is a member permission, not an admin right.
        manages = status == "creator" or (
            status == "administrator" and bool(getattr(member, "can_manage_topics", False))
        )
        return MemberInfo(user_id=member.user.id, status=status, can_manage_topics=manages)

    async def answer_callback_query(
        self,
        *,
        callback_query_id: str,
        text: str | None = None,
        show_alert: bool = False,
        url: str | None = None,
    ) -> None:
        await self._call(
            "answerCallbackQuery",
            self._bot.answer_callback_query(
                callback_query_id=callback_query_id,
                text=text,
                show_alert=show_alert,
                url=url,
                request_timeout=CALL_TIMEOUT_SECONDS,
            ),
        )

    async def _call(
        self, method: str, call: Coroutine[Any, Any, T], *, held_back: bool = True
    ) -> T:
        """Await `call` unless the bot's breaker holds it back; feed the breaker the outcome."""
        from aiogram import exceptions as aiogram_errors

        bot_id = self.bot_id
        admission = self._breakers.admit(bot_id) if held_back else breaker.Admission(allowed=True)
        if not admission.allowed:
            call.close()  # never sent (and never awaited, which Python would warn about)
            refusal = self._breakers.refusal(bot_id, method, admission.wait_seconds)
            self._metrics.telegram_calls.labels(method, type(refusal).__name__).inc()
            raise refusal
        try:
            with self._span(method):
                result = await call
        except aiogram_errors.TelegramAPIError as exc:
            error = translate(exc, method)
        except aiogram_errors.ClientDecodeError as exc:
            error = undecodable(exc, method)
        except (TimeoutError, OSError) as exc:
            error = errors.TelegramUnavailable(f"{method}: {type(exc).__name__}", method=method)
        except BaseException:
            # Cancelled (or a bug): no answer either way, so a probe hands over to the next call.
            if admission.probe:
                self._breakers.release_probe(bot_id)
            raise
        else:
            self._breakers.answered(bot_id)
            self._metrics.telegram_calls.labels(method, "ok").inc()
            return result
        if isinstance(error, errors.TelegramUnavailable):
            self._breakers.failed(bot_id)
        else:
            self._breakers.answered(bot_id)
        if isinstance(error, errors.TelegramRetryAfter):
            self._metrics.telegram_flood_waits.labels(method).inc()
        self._metrics.telegram_calls.labels(method, type(error).__name__).inc()
        raise error

    def _span(self, method: str) -> contextlib.AbstractContextManager[object]:
        """A "telegram.send" span when the call belongs to an update's trace and spans go
        somewhere; nothing otherwise."""
        trace_id = tracing.current_trace_id()
        if trace_id is None or not self._tracer.enabled:
            return contextlib.nullcontext()
        return self._tracer.span(
            "telegram.send",
            trace_id=trace_id,
            attributes={"telegram.method": method, "bot_id": self.bot_id},
        )


def _value(name: object) -> str:
    """An aiogram enum member (ChatType, ChatMemberStatus) as the Bot API spells it."""
    value = getattr(name, "value", name)
    return str(value)


def _markup(keyboard: Keyboard | None) -> InlineKeyboardMarkup | None:
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    if keyboard is None:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(**button.model_dump(exclude_none=True)) for button in row]
            for row in keyboard.rows
        ]
    )


def _entities(entities: Sequence[Entity]) -> list[MessageEntity] | None:
    from aiogram.types import MessageEntity

    if not entities:
        return None
    return [MessageEntity(**entity.model_dump(exclude_none=True)) for entity in entities]


def _reply_to(message_id: int | None) -> ReplyParameters | None:
    from aiogram.types import ReplyParameters

    # A reply whose message was deleted meanwhile still goes, as a plain message.
    return (
        None
        if message_id is None
        else ReplyParameters(message_id=message_id, allow_sending_without_reply=True)
    )


def translate(exc: aiogram_errors.TelegramAPIError, method: str) -> errors.TelegramError:
    """Our error for aiogram's, carrying what a caller needs; the message has no token."""
    from aiogram import exceptions as aiogram_errors

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


def undecodable(exc: aiogram_errors.ClientDecodeError, method: str) -> errors.TelegramError:
    """Our error for a response aiogram could not read.

    A body that is not JSON is no Bot API answer: a proxy's error page, like the HTML of
    the 502 Telegram's front servers give while the Bot API is down. JSON of an unexpected
    shape is an answer that aiogram's types do not fit.
    """
    from pydantic import ValidationError

    if isinstance(exc.original, ValidationError):
        return errors.TelegramError(f"{method}: an answer aiogram cannot parse", method=method)
    return errors.TelegramUnavailable(f"{method}: the answer was not JSON", method=method)


class TelegramClients:
    """Clients for many bots over one HTTP session; opened and closed by the app's lifespan."""

    def __init__(
        self,
        api_url: str,
        metrics: Metrics,
        *,
        breaker_policy: breaker.BreakerPolicy = breaker.DEFAULT_POLICY,
        clock: Clock = utcnow,
        tracer: tracing.Tracer = tracing.NO_TRACER,
    ) -> None:
        self._api_url = api_url
        self._tracer = tracer
        self._session: AiohttpSession | None = None  # opened by the first client
        self._metrics = metrics
        self._bots: dict[str, Bot] = {}
        self._breakers = _Breakers(breaker_policy, clock, metrics)

    def for_token(self, token: str) -> TelegramClient:
        """A client for a token; raises InvalidInput for a string that cannot be a token."""
        bot = self._bots.get(token)
        if bot is None:
            aiogram_loading.import_aiogram()  # at once if `load` has run; waits if it runs
            from aiogram import Bot
            from aiogram.client.session.aiohttp import AiohttpSession
            from aiogram.client.telegram import TelegramAPIServer
            from aiogram.utils.token import TokenValidationError

            if self._session is None:
                self._session = AiohttpSession(api=TelegramAPIServer.from_base(self._api_url))
            try:
                bot = Bot(token, session=self._session)
            except TokenValidationError:
                raise errors.InvalidInput(
                    "that is not a bot token (expected 123456:ABC…)"
                ) from None
            self._bots[token] = bot
        return TelegramClient(bot, self._metrics, self._breakers, self._tracer)

    def forget(self, token: str) -> None:
        # The bot's breaker stays: it is about reaching Telegram, which a new token does not change.
        self._bots.pop(token, None)

    async def aclose(self) -> None:
        self._bots.clear()
        if self._session is None:
            return
        await self._session.close()
        # aiohttp closes its connector's transports on the next loop iteration.
        await asyncio.sleep(0)


_CLOSED = breaker.Breaker()


class _Breakers:
    """Every bot's breaker in this process, keyed by bot id; a closed one is not kept.

    In memory only: another process keeps its own, and a restart starts closed, at worst
    `failure_threshold` failed calls per process and outage before calls fail fast.
    """

    def __init__(self, policy: breaker.BreakerPolicy, clock: Clock, metrics: Metrics) -> None:
        self._policy = policy
        self._clock = clock
        self._metrics = metrics
        self._states: dict[int, breaker.Breaker] = {}

    def admit(self, bot_id: int) -> breaker.Admission:
        admission, state = breaker.admit(self._policy, self._state(bot_id), now=self._clock())
        self._set(bot_id, state)
        return admission

    def answered(self, bot_id: int) -> None:
        if bot_id in self._states:
            self._set(bot_id, breaker.record_success(self._states[bot_id]))

    def failed(self, bot_id: int) -> None:
        self._set(
            bot_id, breaker.record_failure(self._policy, self._state(bot_id), now=self._clock())
        )

    def release_probe(self, bot_id: int) -> None:
        self._set(bot_id, breaker.release_probe(self._state(bot_id), now=self._clock()))

    def refusal(self, bot_id: int, method: str, wait_seconds: float) -> errors.TelegramCircuitOpen:
        """The error for a call the breaker held back, saying why and for how long."""
        state = self._state(bot_id)
        wait = math.ceil(wait_seconds)
        if state.state is breaker.BreakerState.HALF_OPEN:
            why = f"circuit half-open for bot {bot_id}: a probe is in flight; ask again in {wait}s"
        else:
            why = (
                f"circuit open for bot {bot_id} after {state.consecutive_failures} "
                f"consecutive failures; next probe in {wait}s"
            )
        return errors.TelegramCircuitOpen(
            f"{method}: {why}", method=method, retry_after=wait_seconds
        )

    def _state(self, bot_id: int) -> breaker.Breaker:
        return self._states.get(bot_id, _CLOSED)

    def _set(self, bot_id: int, new: breaker.Breaker) -> None:
        old = self._state(bot_id)
        if new == _CLOSED:
            self._states.pop(bot_id, None)
        else:
            self._states[bot_id] = new
        closed = breaker.BreakerState.CLOSED
        if new.state is breaker.BreakerState.OPEN and new.open_count != old.open_count:
            log.warning(
                "telegram.breaker_opened",
                bot_id=bot_id,
                failures=new.consecutive_failures,
                open_seconds=breaker.cool_off_seconds(self._policy, new.open_count),
            )
        elif new.state is closed and old.state is not closed:
            log.info("telegram.breaker_closed", bot_id=bot_id)
        if (new.state is closed) != (old.state is closed):
            self._metrics.telegram_breaker_open.labels(str(bot_id)).set(
                0 if new.state is closed else 1
            )
