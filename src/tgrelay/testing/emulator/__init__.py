"""An emulated Telegram Bot API server, so nothing in tests (or a try-out) calls the real one.

`Emulator` is an ASGI app and a Python API; `tgrelay.testing.emulator_server` serves it on
a port (`running_emulator()` inside a test's event loop, `run()` for `tgrelay emulator`).

Bot API: `/bot<token>/<method>` by GET or POST, parameters in the query string, a JSON
body, a form or multipart (aiogram's way: JSON-encoded complex fields). Methods: getMe,
setWebhook, deleteWebhook, getWebhookInfo, getUpdates, sendMessage (text, parse_mode,
entities, reply_markup, reply_parameters, link_preview_options / disable_web_page_preview,
message_thread_id), createForumTopic (chat_id, name, icon_color?). Answers are
`{"ok": true, "result": …}` or `{"ok": false, "error_code", "description", "parameters"?}`
as Telegram shapes them: malformed token or unknown method 404 "Not Found", unknown,
rotated or revoked token 401 "Unauthorized", getUpdates 409 while a webhook is set or
when a newer getUpdates ends a waiting one. sendMessage: 400 "chat not found", "message
text is empty", "message is too long" (over 4096 characters after parsing), "unsupported
parse_mode", "message thread not found" (a forum topic it does not know), "group chat was
upgraded to a supergroup chat" with `parameters.migrate_to_chat_id`; 403 "bot is not a
member of the group chat" / "… supergroup chat", "bot was kicked from the group chat" /
"… supergroup chat", "bot was blocked by the user"; 429 "Too Many Requests: retry after
N" with `parameters.retry_after` when flood control is on. createForumTopic: 400 "the chat
is not a forum", "not enough rights to create a topic" (the bot is no administrator),
"TOPIC_TITLE_EMPTY". Deviations: webhooks may be plain HTTP on any port; only the HTML
parse mode is parsed (Markdown text is kept as sent); user messages get `bot_command`
entities only; bots have every administrator right or none.

Groups: a bot that gets an update from a group counts as its member. Adding a bot sends
it `my_chat_member` (from the user who added it) and every bot in the group the
`new_chat_members` service message (basic groups also fill the legacy `new_chat_member`
and `new_chat_participant`); removing it sends `my_chat_member` (`kicked` when someone
removed it, `left` when it left) and `left_chat_member`. An injected `my_chat_member`
about the bot sets its status too. Upgrading a basic group sends every bot in it a
`migrate_to_chat_id` message in the old group, then `migrate_from_chat_id` in the new
supergroup (id -100…), where the bots keep their status. A topic's id is the id of the
message that opened it (`forum_topic_created`), and messages in it reply to that message.

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
                                                  "text", "message_thread_id"?}: a user
                                                  writes to the bot (private chat when
                                                  "chat" is absent; {"id"} alone names a
                                                  known chat; a thread id writes in that
                                                  forum topic; writing to a bot the user
                                                  blocked unblocks it first), or
                                                  {"bot_id", "update": {…}}: any Update body,
                                                  update_id assigned when absent → the Update
                                                  (without update_id if allowed_updates
                                                  excludes its kind: then nothing is queued)
    POST   /_emulator/chats                       {"type": "group"|"supergroup", "title",
                                                  "is_forum"?, "username"?, "id"?} → 201 the
                                                  Chat, with a fresh id of Telegram's shape
                                                  (-4… basic, -100… super) unless "id" given
    GET    /_emulator/chats/{chat_id}             the Chat plus "members": [{"bot_id",
                                                  "status"}], "topics": [ForumTopic] in a
                                                  forum, "migrated_to_chat_id" once upgraded
    POST   /_emulator/chats/{chat_id}/members     {"bot_id", "by": User, "status"?: "member"|
                                                  "administrator"}: the user adds the bot (or
                                                  promotes it) → the bot's new Updates
                                                  [my_chat_member, new_chat_members message]
    DELETE /_emulator/chats/{chat_id}/members/{bot_id}
                                                  {"by": User}?: the user kicks the bot, or
                                                  without "by" it leaves → the bot's Updates
                                                  [my_chat_member, left_chat_member message]
    POST   /_emulator/chats/{chat_id}/migrate     {"by": User}? (else an anonymous admin):
                                                  upgrade a basic group → {"chat_id",
                                                  "migrated_to_chat_id"}
    GET    /_emulator/chats/{chat_id}/messages    messages bots sent there, in order
                                                  (?bot_id= for one bot's)
    POST   /_emulator/users/{user_id}/block       {"bot_id"}: the user blocks the bot → its
                                                  my_chat_member Update (status "kicked")
    POST   /_emulator/users/{user_id}/unblock     {"bot_id"} → its my_chat_member Update
    GET    /_emulator/flood                       {"enabled", "per_chat", "per_group",
                                                  "per_bot", "rejected", "rejected_by_chat":
                                                  {chat_id: n}, "sent_by_chat": {chat_id: n},
                                                  "sent_at": [[chat_id, seconds], …] (the
                                                  latest 10,000 sends, timed from the last
                                                  PUT)}
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

Flood control (off until switched on) counts a bot's sendMessage calls in sliding windows
of real monotonic time (`Emulator(monotonic=…)` to drive it): per chat, per group (chats
with negative ids) and per bot. A send over a limit answers 429 with `retry_after` = whole
seconds until a slot frees, and is not stored.
"""

from tgrelay.testing.emulator.flood import Limit, Limits
from tgrelay.testing.emulator.pusher import RetryPolicy
from tgrelay.testing.emulator.service import Emulator
from tgrelay.testing.emulator.state import BotRecord, WebhookConfig

__all__ = ["BotRecord", "Emulator", "Limit", "Limits", "RetryPolicy", "WebhookConfig"]
