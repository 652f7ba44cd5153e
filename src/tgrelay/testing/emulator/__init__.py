"""An emulated Telegram Bot API server, so nothing in tests (or a try-out) calls the real one.

`Emulator` is an ASGI app and a Python API; `tgrelay.testing.emulator_server` serves it on
a port (`running_emulator()` inside a test's event loop, `run()` for `tgrelay emulator`).

Bot API: `/bot<token>/<method>` by GET or POST, parameters in the query string, a JSON
body, a form or multipart (aiogram's way: JSON-encoded complex fields). Methods: getMe,
setWebhook, deleteWebhook, getWebhookInfo, getUpdates, sendMessage (text, parse_mode,
entities, reply_markup, reply_parameters, link_preview_options / disable_web_page_preview,
message_thread_id), sendPhoto / sendDocument / sendVideo / sendVoice / sendSticker by
file_id (caption, parse_mode, caption_entities, and sendMessage's reply_markup, thread and
reply), copyMessage (chat_id, from_chat_id, message_id, caption?, thread, reply, markup →
`{"message_id"}`), editMessageText, editMessageReplyMarkup, answerCallbackQuery
(callback_query_id, text, show_alert, url, cache_time), createForumTopic (chat_id, name,
icon_color?, icon_custom_emoji_id?), editForumTopic, closeForumTopic, reopenForumTopic,
getChat (a ChatFullInfo: the Chat, `permissions` in groups, `accent_color_id`,
`max_reaction_count`, `accepted_gift_types`), getChatMember (ChatMemberOwner /
Administrator with its rights / Member / Left / Banned; bots from the roster, users the
emulator has seen as members, "user not found" for others).
Answers are `{"ok": true, "result": …}` or `{"ok": false, "error_code", "description",
"parameters"?}` as Telegram shapes them: malformed token or unknown method 404 "Not
Found", unknown, rotated or revoked token 401 "Unauthorized", getUpdates 409 while a
webhook is set or when a newer getUpdates ends a waiting one. Sending: 400 "chat not
found", "message text is empty", "message is too long" (over 4096 characters after
parsing), "message caption is too long" (over 1024), "unsupported parse_mode", "message
thread not found" (a forum topic it does not know), "TOPIC_CLOSED" (a closed topic, unless
the bot manages topics), "message to be replied not found", "group chat was upgraded to a
supergroup chat" with `parameters.migrate_to_chat_id`; 403 "bot is not a member of the
group chat" / "… supergroup chat", "bot was kicked from the group chat" / "… supergroup
chat", "bot was blocked by the user"; 429 "Too Many Requests: retry after N" with
`parameters.retry_after` when flood control is on. Inline keyboards: 400
"BUTTON_DATA_INVALID" (callback_data not 1-64 bytes), "inline keyboard button URL is
invalid", "can't parse inline keyboard button: Text buttons are unallowed in the inline
keyboard". Files: "wrong file identifier/HTTP URL specified" (a file_id this bot never
received: ids are per bot, as on Telegram), "type of file mismatch", "there is no photo
in the request". copyMessage: "message to copy not found", "message can't be copied"
(service messages). Edits: "message is not modified: specified new message content and
reply markup are exactly the same as a current content and reply markup of the message",
"message to edit not found", "message can't be edited" (not the bot's), "there is no text
in the message to edit"; editMessageText without reply_markup drops the inline keyboard,
as on Telegram. answerCallbackQuery: "query is too old and response timeout expired or
query ID is invalid" for an unknown query, one answered already, or one older than 15
seconds of the emulator's clock. Topics: "the chat is not a forum", "not enough rights
to create a topic" / "not enough rights to manage topics" (the bot is no administrator),
"TOPIC_TITLE_EMPTY", "TOPIC_NOT_MODIFIED", and 429 with `retry_after` over the topic
creation limit (per chat, off unless set: `Emulator.set_topic_limit`, PUT
/_emulator/topic-limit; counted on the emulator's clock). Deviations: webhooks may be
plain HTTP on any port; only the HTML parse mode is parsed (Markdown text is kept as
sent); user messages get `bot_command` entities only; an administrator bot has every
right but those it was promoted without (`rights`; none as a member); no uploads or URLs (only known file_ids); no inline_message_id edits; a bot's
edit sends no update to other bots.

Business (`business`): an account connects a bot (`business_connection` with rights and
is_enabled), its customers' messages, edits and deletions arrive as `business_message`,
`edited_business_message` and `deleted_business_messages`; sendMessage and sendPhoto & co.
with `business_connection_id` post as the account ("BUSINESS_CONNECTION_INVALID",
"BUSINESS_CONNECTION_NOT_ALLOWED", "chat not found"); control routes under
/_emulator/business/connections (POST; PATCH / DELETE {id}; POST {id}/messages; GET
{id}/chats/{chat_id}/messages; POST …/messages/{message_id}/edit; POST …/{chat_id}/delete).
No 24-hour reply window and no flood control on business sends.

Groups: a bot that gets an update from a group counts as its member. Adding a bot sends
it `my_chat_member` (from the user who added it) and every bot in the group the
`new_chat_members` service message (basic groups also fill the legacy `new_chat_member`
and `new_chat_participant`); removing it sends `my_chat_member` (`kicked` when someone
removed it, `left` when it left) and `left_chat_member`. An injected `my_chat_member`
about the bot sets its status too. Upgrading a basic group sends every bot in it a
`migrate_to_chat_id` message in the old group, then `migrate_from_chat_id` in the new
supergroup (id -100…), where the bots keep their status. A topic's id is the id of the
message that opened it (`forum_topic_created`), and messages in it reply to that message;
editing, closing and reopening it posts `forum_topic_edited` / `forum_topic_closed` /
`forum_topic_reopened` there, which the forum's other bots receive.

Users (Python API and control surface) write text, send media (photo, document, video,
voice, sticker: each gets file_id / file_unique_id of Telegram's shape, valid for the bot
it was sent to), reply to messages, write in forum topics, edit their messages (the bot
gets `edited_message`) and press inline buttons on bots' messages (the bot gets a
`callback_query` with id, from, message, chat_instance and data). A bot's edits change
the message in place: `Emulator.message` and the chat's message list show the new text
and keyboard.

Control surface (same port, JSON in and out; errors are `{"error": "…"}` with 400 or 404):

    GET    /_emulator/bots                        every bot, as below
    POST   /_emulator/bots                        {"username", "first_name"?} → 201 a new bot
                                                  (200 and the same bot if the username exists):
                                                  {"id", "token", "username", "first_name",
                                                   "revoked", "webhook"}
    GET    /_emulator/bots/{bot_id}               the bot; "webhook" is null or {"url",
                                                  "secret_token", "max_connections",
                                                  "allowed_updates"}
    POST   /_emulator/bots/{bot_id}/revoke        every call with its token now answers 401
    POST   /_emulator/bots/{bot_id}/rotate        → {"token"}: a new token, the old one 401
    POST   /_emulator/bots/{bot_id}/webhook       {"url", "secret_token"?, "max_connections"?,
                                                  "allowed_updates"?, "drop_pending_updates"?}:
                                                  setWebhook as if
                                                  another service called it → the bot
    DELETE /_emulator/bots/{bot_id}/webhook       deleteWebhook from outside → the bot
    GET    /_emulator/bots/{bot_id}/updates       updates not yet confirmed or acknowledged
    POST   /_emulator/updates                     {"bot_id", "from": User, "chat": Chat?,
                                                  "text" | "media": {"type": "photo"|
                                                  "document"|"video"|"voice"|"sticker",
                                                  …details}, "caption"?,
                                                  "message_thread_id"?,
                                                  "reply_to_message_id"?}: a user writes or
                                                  sends a file (fresh file_id for the bot)
                                                  to the bot (private chat when "chat" is
                                                  absent; {"id"} alone names a known chat; a
                                                  thread id writes in that forum topic;
                                                  writing to a bot the user blocked unblocks
                                                  it first), or
                                                  {"bot_id", "update": {…}}: any Update body,
                                                  update_id assigned when absent → the Update
                                                  (without update_id if allowed_updates
                                                  excludes its kind: then nothing is queued)
    POST   /_emulator/chats                       {"type": "group"|"supergroup", "title",
                                                  "is_forum"?, "username"?, "id"?} → 201 the
                                                  Chat, with a fresh id of Telegram's shape
                                                  (-4… basic, -100… super) unless "id" given
    GET    /_emulator/chats/{chat_id}             the Chat plus "members": [{"bot_id",
                                                  "status"}], "topics": [ForumTopic +
                                                  "is_closed"] in a forum,
                                                  "migrated_to_chat_id" once upgraded
    POST   /_emulator/chats/{chat_id}/members     {"bot_id", "by": User, "status"?: "member"|
                                                  "administrator", "rights"?: {"can_…":
                                                  false}}: the user adds the bot (or promotes
                                                  it, with every right but those false) → the
                                                  bot's new Updates [my_chat_member,
                                                  new_chat_members message]
    DELETE /_emulator/chats/{chat_id}/members/{bot_id}
                                                  {"by": User}?: the user kicks the bot, or
                                                  without "by" it leaves → the bot's Updates
                                                  [my_chat_member, left_chat_member message]
    POST   /_emulator/chats/{chat_id}/migrate     {"by": User}? (else an anonymous admin):
                                                  upgrade a basic group → {"chat_id",
                                                  "migrated_to_chat_id"}
    GET    /_emulator/chats/{chat_id}/messages    messages bots sent there, in order, as
                                                  they now are (?bot_id= for one bot's)
    GET    /_emulator/chats/{chat_id}/messages/{message_id}
                                                  any message there as it now is (edits
                                                  included; ?bot_id= for a private chat)
    POST   /_emulator/chats/{chat_id}/messages/{message_id}/edit
                                                  {"bot_id", "from": User, "text"}: the user
                                                  edits their message's text (or caption)
                                                  → the bot's edited_message Update
    POST   /_emulator/chats/{chat_id}/messages/{message_id}/press
                                                  {"bot_id", "from": User, "data"}: the user
                                                  presses the inline button with that
                                                  callback_data on the bot's message → the
                                                  bot's callback_query Update
    GET    /_emulator/callbacks/{query_id}        {"answer": null | {"text", "show_alert",
                                                  "url", "cache_time"}}: the bot's answer
    GET    /_emulator/topic-limit                 {"per_chat": null | [count, seconds]}
    PUT    /_emulator/topic-limit                 {"per_chat": [count, seconds] | null}: at
                                                  most count topics opened per chat in any
                                                  window of the emulator's clock → as GET
    POST   /_emulator/users/{user_id}/block       {"bot_id"}: the user blocks the bot → its
                                                  my_chat_member Update (status "kicked")
    POST   /_emulator/users/{user_id}/unblock     {"bot_id"} → its my_chat_member Update
    GET    /_emulator/flood                       {"enabled", "per_chat", "per_group",
                                                  "per_bot", "rejected", "rejected_by_chat":
                                                  {chat_id: n}, "sent_by_chat": {chat_id: n},
                                                  "sent_at": [[chat_id, seconds], …] (the
                                                  latest 10,000 sends, timed from the last
                                                  PUT), "rejected_at": the same of the
                                                  latest 10,000 refusals}
    PUT    /_emulator/flood                       {"enabled", "per_chat"?: [1, 1.0],
                                                  "per_group"?: [20, 60.0], "per_bot"?: [30,
                                                  1.0]} ([count, window seconds]; absent:
                                                  Telegram's) → as GET
    GET    /_emulator/latency                     {"min_seconds", "max_seconds"}: how long a
                                                  Bot API request takes to arrive (0: at once)
    PUT    /_emulator/latency                     {"min_seconds"?: 0, "max_seconds"} (up to 5)
                                                  → as GET: each request waits a random time
                                                  between them before it is handled, flood
                                                  control included
    GET    /_emulator/clock                       {"now": ISO 8601, "timestamp": unix seconds}
    POST   /_emulator/clock/advance               {"seconds"} → the new {"now", "timestamp"}

Delivery: with a webhook, updates are POSTed (JSON, `X-Telegram-Bot-Api-Secret-Token` when
a secret is set), one at a time per chat in update order, at most `max_connections` at
once per bot, retried with doubling delays until a 2xx; failures show in getWebhookInfo's
`last_error_date` / `last_error_message`. Without one they wait for getUpdates.

Flood control (off until switched on) counts a bot's sends (sendMessage, the media
methods, copyMessage) in sliding windows of real monotonic time (`Emulator(monotonic=…)`
to drive it): per chat, per group (chats with negative ids) and per bot. A send over a limit answers 429 with `retry_after` = whole
seconds until a slot frees, and is not stored.
"""

from tgrelay.testing.emulator.flood import Limit, Limits
from tgrelay.testing.emulator.pusher import RetryPolicy
from tgrelay.testing.emulator.service import Emulator
from tgrelay.testing.emulator.state import BotRecord, WebhookConfig

__all__ = ["BotRecord", "Emulator", "Limit", "Limits", "RetryPolicy", "WebhookConfig"]
