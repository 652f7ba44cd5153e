"""An emulated Telegram Bot API server, so nothing in tests (or a try-out) calls the real one.

`Emulator` is an ASGI app and a Python API; `tgrelay.testing.emulator_server` serves it on
a port (`running_emulator()` inside a test's event loop, `run()` for `tgrelay emulator`).

Bot API: `/bot<token>/<method>` by GET or POST, parameters in the query string, a JSON
body, a form or multipart (aiogram's way: JSON-encoded complex fields). Methods: getMe,
setWebhook, deleteWebhook, getWebhookInfo, getUpdates, sendMessage. Answers are
`{"ok": true, "result": …}` or `{"ok": false, "error_code", "description", "parameters"?}`
as Telegram shapes them: malformed token or unknown method 404 "Not Found", unknown,
rotated or revoked token 401 "Unauthorized", getUpdates 409 while a webhook is set or
when a newer getUpdates ends a waiting one. Deviations: webhooks may be plain HTTP on any
port; only the HTML parse mode is parsed (Markdown text is kept as sent); user messages
get `bot_command` entities only.

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
                                                  "text"}: a user writes to the bot (private
                                                  chat when "chat" is absent), or
                                                  {"bot_id", "update": {…}}: any Update body,
                                                  update_id assigned when absent → the Update
                                                  (without update_id if allowed_updates
                                                  excludes its kind: then nothing is queued)
    GET    /_emulator/chats/{chat_id}/messages    messages bots sent there, in order
                                                  (?bot_id= for one bot's)
    GET    /_emulator/clock                       {"now": ISO 8601, "timestamp": unix seconds}
    POST   /_emulator/clock/advance               {"seconds"} → the new {"now", "timestamp"}

Delivery: with a webhook, updates are POSTed (JSON, `X-Telegram-Bot-Api-Secret-Token` when
a secret is set), one at a time per chat in update order, at most `max_connections` at
once per bot, retried with doubling delays until a 2xx; failures show in getWebhookInfo's
`last_error_date` / `last_error_message`. Without one they wait for getUpdates.
"""

from tgrelay.testing.emulator.pusher import RetryPolicy
from tgrelay.testing.emulator.service import Emulator
from tgrelay.testing.emulator.state import BotRecord, WebhookConfig

__all__ = ["BotRecord", "Emulator", "RetryPolicy", "WebhookConfig"]
