"""One outbox request as the one TelegramClient call that carries it out."""

from __future__ import annotations

from tgrelay.telegram.client import TelegramClient
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.outbox.outcomes import Sent


async def perform(client: TelegramClient, request: messages.Request) -> Sent:
    """Make the request's Bot API call; what Telegram gave back, as a Sent outcome.

    Raises our TelegramError tree (`telegram.client.translate`) when Telegram refuses.
    """
    method = request.method
    match request:
        case messages.SendText():
            sent = await client.send_message(
                chat_id=request.chat_id,
                text=request.text,
                parse_mode=request.parse_mode,
                entities=request.entities,
                keyboard=request.keyboard,
                reply_to_message_id=request.reply_to_message_id,
                message_thread_id=request.message_thread_id,
                business_connection_id=request.business_connection_id,
            )
            return Sent(method=method, message_id=sent.message_id)
        case messages.SendFile():
            sent = await client.send_file(
                request.method,
                chat_id=request.chat_id,
                file_id=request.file_id,
                caption=request.caption,
                parse_mode=request.parse_mode,
                caption_entities=request.caption_entities,
                keyboard=request.keyboard,
                reply_to_message_id=request.reply_to_message_id,
                message_thread_id=request.message_thread_id,
                business_connection_id=request.business_connection_id,
            )
            return Sent(method=method, message_id=sent.message_id)
        case messages.CopyMessage():
            copied = await client.copy_message(
                chat_id=request.chat_id,
                from_chat_id=request.from_chat_id,
                message_id=request.message_id,
                caption=request.caption,
                parse_mode=request.parse_mode,
                keyboard=request.keyboard,
                reply_to_message_id=request.reply_to_message_id,
                message_thread_id=request.message_thread_id,
            )
            return Sent(method=method, message_id=copied)
        case messages.EditText():
            await client.edit_message_text(
                chat_id=request.chat_id,
                message_id=request.message_id,
                text=request.text,
                parse_mode=request.parse_mode,
                entities=request.entities,
                keyboard=request.keyboard,
            )
            return Sent(method=method, message_id=request.message_id)
        case messages.EditKeyboard():
            await client.edit_message_reply_markup(
                chat_id=request.chat_id, message_id=request.message_id, keyboard=request.keyboard
            )
            return Sent(method=method, message_id=request.message_id)
        case messages.CreateTopic():
            thread_id = await client.create_forum_topic(
                chat_id=request.chat_id,
                name=request.name,
                icon_custom_emoji_id=request.icon_custom_emoji_id,
            )
            return Sent(method=method, message_thread_id=thread_id)
        case messages.EditTopic():
            await client.edit_forum_topic(
                chat_id=request.chat_id,
                message_thread_id=request.message_thread_id,
                name=request.name,
                icon_custom_emoji_id=request.icon_custom_emoji_id,
            )
            return Sent(method=method, message_thread_id=request.message_thread_id)
        case messages.CloseTopic():
            await client.close_forum_topic(
                chat_id=request.chat_id, message_thread_id=request.message_thread_id
            )
            return Sent(method=method, message_thread_id=request.message_thread_id)
        case messages.ReopenTopic():
            await client.reopen_forum_topic(
                chat_id=request.chat_id, message_thread_id=request.message_thread_id
            )
            return Sent(method=method, message_thread_id=request.message_thread_id)
        case messages.AnswerCallback():
            await client.answer_callback_query(
                callback_query_id=request.callback_query_id,
                text=request.text,
                show_alert=request.show_alert,
                url=request.url,
            )
            return Sent(method=method)
