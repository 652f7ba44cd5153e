"""Media: users' files get Telegram's ids, and bots send them again by file_id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import ALICE, BOB, NOW, SUPPORT_DESK_ID, bad_request, call


def test_a_users_photo_has_telegrams_sizes_and_ids(emulator: Emulator, bot: BotRecord) -> None:
    """A photo arrives as PhotoSizes up to its own size, each with a file_id for this bot."""
    update = emulator.send_media(
        bot.id, ALICE, None, "photo", caption="/receipt here", details={"width": 1000}
    )
    message = update["message"]
    sizes = message["photo"]
    assert [(size["width"], size["height"]) for size in sizes] == [
        (90, 86),
        (320, 307),
        (800, 768),
        (1000, 960),
    ]
    assert {
        (size["file_id"][:4], len(size["file_id"]), len(size["file_unique_id"])) for size in sizes
    } == {("AgAC", 71, 16)}
    assert (message["caption"], message["caption_entities"], "text" in message) == (
        "/receipt here",
        [{"offset": 0, "length": 8, "type": "bot_command"}],
        False,
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("document", {"file_name": "invoice.pdf", "mime_type": "application/pdf"}),
        ("video", {"width": 1280, "height": 720, "duration": 12, "mime_type": "video/mp4"}),
        ("voice", {"duration": 4, "mime_type": "audio/ogg"}),
        (
            "sticker",
            {
                "width": 512,
                "height": 512,
                "emoji": "\N{THUMBS UP SIGN}",
                "is_animated": False,
                "is_video": False,
                "type": "regular",
            },
        ),
    ],
)
async def test_each_kind_goes_back_out_by_file_id(
    client: httpx.AsyncClient,
    emulator: Emulator,
    bot: BotRecord,
    kind: str,
    expected: dict[str, Any],
) -> None:
    """A bot sends a file it received by file_id and gets a Message carrying the same file."""
    received = emulator.send_media(bot.id, ALICE, None, kind)["message"][kind]
    method = "send" + kind.capitalize()
    sent = await call(client, bot, method, chat_id=ALICE["id"], **{kind: received["file_id"]})
    shape = {k: v for k, v in received.items() if k not in {"file_id", "file_unique_id"}}
    assert shape == {**expected, "file_size": received["file_size"]}
    assert sent == (
        200,
        {
            "ok": True,
            "result": {
                "message_id": 2,
                "from": bot.user_json(),
                "chat": {
                    **{k: ALICE[k] for k in ("id", "first_name", "username")},
                    "type": "private",
                },
                "date": NOW,
                kind: received,
            },
        },
    )


async def test_send_photo_with_caption_keyboard_topic_and_reply(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """sendPhoto takes an HTML caption, an inline keyboard, a topic and a message to reply to."""
    forum = emulator.create_chat(
        "supergroup", "Support Desk", is_forum=True, chat_id=SUPPORT_DESK_ID
    )
    emulator.add_bot(forum["id"], bot.id, ALICE, status="administrator")  # message 1
    topic = emulator.create_forum_topic(bot.id, forum["id"], "#42 Billing")  # message 2
    asked = emulator.send_media(bot.id, BOB, {"id": forum["id"]}, "photo", message_thread_id=2)[
        "message"
    ]  # message 3
    keyboard = {"inline_keyboard": [[{"text": "Close", "callback_data": "ticket:42:close"}]]}
    status, body = await call(
        client,
        bot,
        "sendPhoto",
        chat_id=forum["id"],
        photo=asked["photo"][-1]["file_id"],
        caption="<b>Receipt</b> for #42",
        parse_mode="HTML",
        reply_markup=keyboard,
        message_thread_id=topic.message_thread_id,
        reply_parameters={"message_id": 3},
    )
    replied = {key: value for key, value in asked.items() if key != "reply_to_message"}
    assert (status, body["result"]) == (
        200,
        {
            "message_id": 4,
            "message_thread_id": 2,
            "from": bot.user_json(),
            "chat": forum,
            "date": NOW,
            "is_topic_message": True,
            "reply_to_message": replied,
            "photo": asked["photo"],
            "caption": "Receipt for #42",
            "caption_entities": [{"offset": 0, "length": 7, "type": "bold"}],
            "reply_markup": keyboard,
        },
    )


async def test_file_refusals_match_telegram(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Unknown, foreign, mismatched and missing files and long captions are refused."""
    other = emulator.create_bot("other_bot")
    document = emulator.send_media(bot.id, ALICE, None, "document")["message"]["document"]
    foreign = emulator.send_media(other.id, ALICE, None, "photo")["message"]["photo"][0]
    chat = ALICE["id"]
    answers = [
        await call(client, bot, "sendPhoto", chat_id=chat, photo="AgACAgIAAxkBAAIBogus"),
        await call(client, bot, "sendPhoto", chat_id=chat, photo=foreign["file_id"]),
        await call(client, bot, "sendPhoto", chat_id=chat, photo=document["file_id"]),
        await call(client, bot, "sendVoice", chat_id=chat),
        await call(
            client,
            bot,
            "sendDocument",
            chat_id=chat,
            document=document["file_id"],
            caption="x" * 1025,
        ),
    ]
    assert answers == [
        bad_request("wrong file identifier/HTTP URL specified"),
        bad_request("wrong file identifier/HTTP URL specified"),
        bad_request("type of file mismatch"),
        bad_request("there is no voice in the request"),
        bad_request("message caption is too long"),
    ]
