"""The control surface: `/_emulator/...` JSON routes that play BotFather, users and time.

Every route is listed in the package docstring (`tgrelay.testing.emulator`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tgrelay.testing.emulator import errors, flood
from tgrelay.testing.emulator.state import BotRecord, WebhookConfig

if TYPE_CHECKING:
    from tgrelay.testing.emulator.service import Emulator

PREFIX = "/_emulator"
MAX_BODY_BYTES = 1024 * 1024


BodyT = TypeVar("BodyT", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreateBot(_Body):
    # Telegram bot usernames: 5–32 of A-Za-z0-9_ (the "bot" suffix is not enforced here).
    username: str = Field(pattern=r"^[A-Za-z0-9_]{1,32}$")
    first_name: str | None = Field(default=None, min_length=1, max_length=64)


class SetWebhook(_Body):
    url: str = Field(min_length=1)
    secret_token: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,256}$")
    max_connections: int = Field(default=40, ge=1, le=100)
    allowed_updates: list[str] | None = None
    drop_pending_updates: bool = False


class Media(BaseModel):
    """A file a user sends: its kind and what differs from the defaults (`media.DEFAULTS`)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["photo", "document", "video", "voice", "sticker"]

    def details(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class NewUpdate(_Body):
    """Either a user's message (`from`, optional `chat`, `text` or `media` with a `caption`)
    or a raw `update`."""

    bot_id: int
    from_user: dict[str, Any] | None = Field(default=None, alias="from")
    chat: dict[str, Any] | None = None
    text: str | None = None
    media: Media | None = None
    caption: str | None = None
    message_thread_id: int | None = None
    reply_to_message_id: int | None = None
    update: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> NewUpdate:
        message_fields = (
            self.from_user,
            self.chat,
            self.text,
            self.media,
            self.caption,
            self.message_thread_id,
            self.reply_to_message_id,
        )
        if self.update is not None:
            if any(value is not None for value in message_fields):
                raise ValueError("give either update, or the fields of a user's message")
        elif self.from_user is None or (self.text is None) == (self.media is None):
            raise ValueError("a message needs from and either text or media")
        elif self.caption is not None and self.media is None:
            raise ValueError("a caption goes with media")
        return self


class UserEdit(_Body):
    bot_id: int
    from_user: dict[str, Any] = Field(alias="from")
    text: str = Field(min_length=1)


class ButtonPress(_Body):
    bot_id: int
    from_user: dict[str, Any] = Field(alias="from")
    data: str = Field(min_length=1)


class Advance(_Body):
    seconds: float = Field(ge=0)


class CreateChat(_Body):
    id: int | None = None
    type: Literal["group", "supergroup"]
    title: str = Field(min_length=1, max_length=128)
    is_forum: bool = False
    username: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]{5,32}$")


class AddMember(_Body):
    bot_id: int
    by: dict[str, Any]
    status: Literal["member", "administrator"] = "member"
    # An administrator's rights set to false (e.g. {"can_manage_topics": false}).
    rights: dict[str, bool] | None = None


class ActedBy(_Body):
    """Who did it; absent: the bot left on its own, or an anonymous admin acted."""

    by: dict[str, Any] | None = None


class BusinessConnect(_Body):
    bot_id: int
    user: dict[str, Any]
    # BusinessBotRights granted (true) or not; absent: may read and reply.
    rights: dict[str, bool] | None = None
    is_enabled: bool = True


class BusinessChange(_Body):
    is_enabled: bool | None = None
    rights: dict[str, bool] | None = None


class BusinessMessage(_Body):
    from_user: dict[str, Any] = Field(alias="from")
    text: str | None = None
    media: Media | None = None
    caption: str | None = None


class BusinessEdit(_Body):
    text: str = Field(min_length=1)


class BusinessDelete(_Body):
    message_ids: list[int] = Field(min_length=1)


class BotRef(_Body):
    bot_id: int


# [count, window seconds]
LimitPair = tuple[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0)]]


class FloodSettings(_Body):
    enabled: bool
    per_chat: LimitPair = (1, 1.0)
    per_group: LimitPair = (20, 60.0)
    per_bot: LimitPair = (30, 1.0)

    def limits(self) -> flood.Limits:
        return flood.Limits(
            per_chat=flood.Limit(count=self.per_chat[0], window=self.per_chat[1]),
            per_group=flood.Limit(count=self.per_group[0], window=self.per_group[1]),
            per_bot=flood.Limit(count=self.per_bot[0], window=self.per_bot[1]),
        )


class TopicLimit(_Body):
    # [count, window seconds] per chat; null: no limit.
    per_chat: LimitPair | None

    def limit(self) -> flood.Limit | None:
        if self.per_chat is None:
            return None
        return flood.Limit(count=self.per_chat[0], window=self.per_chat[1])


class Latency(_Body):
    # Their range is checked by Emulator.set_latency.
    min_seconds: float = 0.0
    max_seconds: float


def _json(body: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


def _problem(status_code: int, message: str) -> Response:
    return _json({"error": message}, status_code)


def bot_json(record: BotRecord, webhook: WebhookConfig | None) -> dict[str, Any]:
    """A bot as the control surface shows it."""
    return {
        "id": record.id,
        "token": record.token,
        "username": record.username,
        "first_name": record.first_name,
        "revoked": record.revoked,
        "webhook": None
        if webhook is None
        else {
            "url": webhook.url,
            "secret_token": webhook.secret_token,
            "max_connections": webhook.max_connections,
            "allowed_updates": None
            if webhook.allowed_updates is None
            else list(webhook.allowed_updates),
        },
    }


async def _parse(request: Request, model: type[BodyT]) -> BodyT:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise errors.InvalidPayload("body too large")
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise errors.InvalidPayload(f"{where}: {first['msg']}" if where else first["msg"]) from exc


def _int_param(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise errors.InvalidPayload(f"{name} must be an integer") from None


def _bot_id_query(request: Request) -> int | None:
    raw = request.query_params.get("bot_id")
    try:
        return int(raw) if raw else None
    except ValueError:
        raise errors.InvalidPayload("bot_id must be an integer") from None


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Turn the emulator's errors into JSON problems: 404 unknown bot, 400 bad input."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except (errors.UnknownBot, errors.UnknownChat) as exc:
            return _problem(404, str(exc))
        except errors.InvalidPayload as exc:
            return _problem(400, str(exc))
        except errors.BotApiError as exc:
            return _problem(exc.code, exc.description)

    return guarded


def routes(emulator: Emulator) -> list[Route]:
    def show(bot_id: int) -> dict[str, Any]:
        return bot_json(emulator.bot(bot_id), emulator.webhook_of(bot_id))

    async def list_bots(request: Request) -> Response:
        return _json([show(record.id) for record in emulator.state.bots()])

    async def create_bot(request: Request) -> Response:
        body = await _parse(request, CreateBot)
        existed = any(r.username.lower() == body.username.lower() for r in emulator.state.bots())
        record = emulator.create_bot(body.username, first_name=body.first_name)
        return _json(show(record.id), 200 if existed else 201)

    async def get_bot(request: Request) -> Response:
        return _json(show(_int_param(request, "bot_id")))

    async def revoke(request: Request) -> Response:
        bot_id = _int_param(request, "bot_id")
        emulator.revoke(bot_id)
        return _json(show(bot_id))

    async def rotate(request: Request) -> Response:
        return _json({"token": emulator.rotate_token(_int_param(request, "bot_id"))})

    async def set_webhook(request: Request) -> Response:
        bot_id = _int_param(request, "bot_id")
        body = await _parse(request, SetWebhook)
        emulator.set_webhook(
            bot_id,
            body.url,
            secret_token=body.secret_token,
            max_connections=body.max_connections,
            allowed_updates=body.allowed_updates,
            drop_pending_updates=body.drop_pending_updates,
        )
        return _json(show(bot_id))

    async def delete_webhook(request: Request) -> Response:
        bot_id = _int_param(request, "bot_id")
        emulator.delete_webhook(bot_id)
        return _json(show(bot_id))

    async def pending_updates(request: Request) -> Response:
        return _json(emulator.pending_updates(_int_param(request, "bot_id")))

    async def new_update(request: Request) -> Response:
        body = await _parse(request, NewUpdate)
        if body.update is not None:
            return _json(emulator.inject_update(body.bot_id, body.update))
        assert body.from_user is not None
        where = {
            "message_thread_id": body.message_thread_id,
            "reply_to_message_id": body.reply_to_message_id,
        }
        if body.media is not None:
            return _json(
                emulator.send_media(
                    body.bot_id,
                    body.from_user,
                    body.chat,
                    body.media.type,
                    caption=body.caption,
                    details=body.media.details(),
                    **where,
                )
            )
        assert body.text is not None
        return _json(
            emulator.send_message(body.bot_id, body.from_user, body.chat, body.text, **where)
        )

    async def edit_message(request: Request) -> Response:
        body = await _parse(request, UserEdit)
        chat_id, message_id = _int_param(request, "chat_id"), _int_param(request, "message_id")
        return _json(
            emulator.edit_message(body.bot_id, body.from_user, chat_id, message_id, body.text)
        )

    async def press_button(request: Request) -> Response:
        body = await _parse(request, ButtonPress)
        chat_id, message_id = _int_param(request, "chat_id"), _int_param(request, "message_id")
        return _json(
            emulator.press_button(body.bot_id, body.from_user, chat_id, message_id, body.data)
        )

    async def get_message(request: Request) -> Response:
        chat_id, message_id = _int_param(request, "chat_id"), _int_param(request, "message_id")
        return _json(emulator.message(chat_id, message_id, bot_id=_bot_id_query(request)))

    async def callback_answer(request: Request) -> Response:
        return _json({"answer": emulator.callback_answer(request.path_params["query_id"])})

    def topic_limit() -> dict[str, Any]:
        limit = emulator.state.topic_limit.limit
        return {"per_chat": None if limit is None else limit.as_json()}

    async def get_topic_limit(request: Request) -> Response:
        return _json(topic_limit())

    async def put_topic_limit(request: Request) -> Response:
        body = await _parse(request, TopicLimit)
        emulator.set_topic_limit(body.limit())
        return _json(topic_limit())

    async def create_chat(request: Request) -> Response:
        body = await _parse(request, CreateChat)
        chat = emulator.create_chat(
            body.type, body.title, is_forum=body.is_forum, username=body.username, chat_id=body.id
        )
        return _json(chat, 201)

    async def get_chat(request: Request) -> Response:
        return _json(emulator.chat(_int_param(request, "chat_id")))

    async def add_member(request: Request) -> Response:
        body = await _parse(request, AddMember)
        chat_id = _int_param(request, "chat_id")
        return _json(
            emulator.add_bot(chat_id, body.bot_id, body.by, status=body.status, rights=body.rights)
        )

    async def remove_member(request: Request) -> Response:
        body = await _parse(request, ActedBy)
        chat_id, bot_id = _int_param(request, "chat_id"), _int_param(request, "bot_id")
        return _json(emulator.remove_bot(chat_id, bot_id, by=body.by))

    async def migrate(request: Request) -> Response:
        body = await _parse(request, ActedBy)
        chat_id = _int_param(request, "chat_id")
        new_id = emulator.migrate_chat(chat_id, by=body.by)
        return _json({"chat_id": chat_id, "migrated_to_chat_id": new_id})

    async def block(request: Request) -> Response:
        body = await _parse(request, BotRef)
        return _json(emulator.block_bot(_int_param(request, "user_id"), body.bot_id))

    async def unblock(request: Request) -> Response:
        body = await _parse(request, BotRef)
        return _json(emulator.unblock_bot(_int_param(request, "user_id"), body.bot_id))

    async def connect_business(request: Request) -> Response:
        body = await _parse(request, BusinessConnect)
        update = emulator.connect_business(
            body.bot_id, body.user, rights=body.rights, is_enabled=body.is_enabled
        )
        return _json(update, 201)

    async def change_business(request: Request) -> Response:
        body = await _parse(request, BusinessChange)
        connection_id = request.path_params["connection_id"]
        return _json(
            emulator.change_business_connection(
                connection_id, is_enabled=body.is_enabled, rights=body.rights
            )
        )

    async def remove_business(request: Request) -> Response:
        connection_id = request.path_params["connection_id"]
        return _json(emulator.change_business_connection(connection_id, removed=True))

    async def business_message(request: Request) -> Response:
        body = await _parse(request, BusinessMessage)
        connection_id = request.path_params["connection_id"]
        return _json(
            emulator.business_message(
                connection_id,
                body.from_user,
                body.text,
                media_kind=None if body.media is None else body.media.type,
                caption=body.caption,
            )
        )

    async def business_chat(request: Request) -> Response:
        connection_id = request.path_params["connection_id"]
        chat_id = _int_param(request, "chat_id")
        return _json(emulator.business_messages(connection_id, chat_id))

    async def business_edit(request: Request) -> Response:
        body = await _parse(request, BusinessEdit)
        connection_id = request.path_params["connection_id"]
        chat_id, message_id = _int_param(request, "chat_id"), _int_param(request, "message_id")
        return _json(emulator.edit_business_message(connection_id, chat_id, message_id, body.text))

    async def business_delete(request: Request) -> Response:
        body = await _parse(request, BusinessDelete)
        connection_id = request.path_params["connection_id"]
        chat_id = _int_param(request, "chat_id")
        return _json(emulator.delete_business_messages(connection_id, chat_id, body.message_ids))

    async def get_flood(request: Request) -> Response:
        return _json(emulator.flood_report())

    async def put_flood(request: Request) -> Response:
        body = await _parse(request, FloodSettings)
        emulator.set_flood_control(enabled=body.enabled, limits=body.limits())
        return _json(emulator.flood_report())

    def latency() -> dict[str, float]:
        least, most = emulator.latency
        return {"min_seconds": least, "max_seconds": most}

    async def get_latency(request: Request) -> Response:
        return _json(latency())

    async def put_latency(request: Request) -> Response:
        body = await _parse(request, Latency)
        emulator.set_latency(body.max_seconds, min_seconds=body.min_seconds)
        return _json(latency())

    async def chat_messages(request: Request) -> Response:
        chat_id = _int_param(request, "chat_id")
        return _json(emulator.sent_messages(chat_id, bot_id=_bot_id_query(request)))

    def now() -> dict[str, Any]:
        return {"now": emulator.clock.now().isoformat(), "timestamp": emulator.clock.timestamp()}

    async def clock(request: Request) -> Response:
        return _json(now())

    async def advance(request: Request) -> Response:
        body = await _parse(request, Advance)
        emulator.clock.advance(body.seconds)
        return _json(now())

    table: list[tuple[str, str, Handler]] = [
        ("/bots", "GET", list_bots),
        ("/bots", "POST", create_bot),
        ("/bots/{bot_id}", "GET", get_bot),
        ("/bots/{bot_id}/revoke", "POST", revoke),
        ("/bots/{bot_id}/rotate", "POST", rotate),
        ("/bots/{bot_id}/webhook", "POST", set_webhook),
        ("/bots/{bot_id}/webhook", "DELETE", delete_webhook),
        ("/bots/{bot_id}/updates", "GET", pending_updates),
        ("/updates", "POST", new_update),
        ("/chats", "POST", create_chat),
        ("/chats/{chat_id}", "GET", get_chat),
        ("/chats/{chat_id}/members", "POST", add_member),
        ("/chats/{chat_id}/members/{bot_id}", "DELETE", remove_member),
        ("/chats/{chat_id}/migrate", "POST", migrate),
        ("/chats/{chat_id}/messages", "GET", chat_messages),
        ("/chats/{chat_id}/messages/{message_id}", "GET", get_message),
        ("/chats/{chat_id}/messages/{message_id}/edit", "POST", edit_message),
        ("/chats/{chat_id}/messages/{message_id}/press", "POST", press_button),
        ("/callbacks/{query_id}", "GET", callback_answer),
        ("/topic-limit", "GET", get_topic_limit),
        ("/topic-limit", "PUT", put_topic_limit),
        ("/users/{user_id}/block", "POST", block),
        ("/users/{user_id}/unblock", "POST", unblock),
        ("/business/connections", "POST", connect_business),
        ("/business/connections/{connection_id}", "PATCH", change_business),
        ("/business/connections/{connection_id}", "DELETE", remove_business),
        ("/business/connections/{connection_id}/messages", "POST", business_message),
        ("/business/connections/{connection_id}/chats/{chat_id}/messages", "GET", business_chat),
        (
            "/business/connections/{connection_id}/chats/{chat_id}/messages/{message_id}/edit",
            "POST",
            business_edit,
        ),
        ("/business/connections/{connection_id}/chats/{chat_id}/delete", "POST", business_delete),
        ("/flood", "GET", get_flood),
        ("/flood", "PUT", put_flood),
        ("/latency", "GET", get_latency),
        ("/latency", "PUT", put_latency),
        ("/clock", "GET", clock),
        ("/clock/advance", "POST", advance),
    ]
    return [
        Route(PREFIX + path, _guarded(handler), methods=[verb], name=f"{verb} {path}")
        for path, verb, handler in table
    ]
