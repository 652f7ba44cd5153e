"""Pure rules of the emulator: update kinds, ordering keys, entities and text limits."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator import errors, membership, pusher, text, updates

from .conftest import load_fixture


@pytest.mark.parametrize(
    ("fixture", "kind", "key"),
    [
        ("update_private_text", "message", 5551234),
        ("update_callback_query", "callback_query", -1003456789012),
        ("update_my_chat_member_added_to_group", "my_chat_member", -4012345678),
    ],
)
def test_kind_and_ordering_key_of_fixtures(fixture: str, kind: str, key: int) -> None:
    """Each real update has its kind and is ordered by its chat (a callback: its message's)."""
    update = load_fixture(fixture)
    assert (updates.kind_of(update), updates.ordering_key(update)) == (kind, key)


def test_ordering_key_falls_back_to_the_user_then_none() -> None:
    """Updates without a chat are ordered by their sender, and with neither not at all."""
    inline = {"update_id": 1, "inline_query": {"id": "1", "from": {"id": 42}, "query": "x"}}
    bare = {"update_id": 2, "poll": {"id": "p"}}
    assert (updates.ordering_key(inline), updates.ordering_key(bare)) == (42, None)


@pytest.mark.parametrize(
    ("kind", "allowed", "expected"),
    [
        ("message", None, True),
        ("chat_member", None, False),
        ("message_reaction", None, False),
        ("chat_member", ("chat_member",), True),
        ("message", ("callback_query",), False),
    ],
)
def test_allowed_updates(kind: str, allowed: tuple[str, ...] | None, expected: bool) -> None:
    """Without a setting every kind but the opt-in ones arrives; with one only those named."""
    assert updates.is_allowed(kind, allowed) is expected


def test_empty_allowed_updates_means_the_default() -> None:
    """An empty allowed_updates list restores Telegram's default; duplicates collapse."""
    assert (updates.normalize_allowed([]), updates.normalize_allowed(["a", "b", "a"])) == (
        None,
        ("a", "b"),
    )


@pytest.mark.parametrize(
    ("message", "entities"),
    [
        ("/start AbC123_-xyz", [{"offset": 0, "length": 6, "type": "bot_command"}]),
        ("/help@relay_bot now", [{"offset": 0, "length": 15, "type": "bot_command"}]),
        ("🙂 /stop", [{"offset": 3, "length": 5, "type": "bot_command"}]),
        ("and/or 1/2 /x/y", []),
        ("plain text", []),
    ],
)
def test_command_entities(message: str, entities: list[dict[str, Any]]) -> None:
    """Commands are found at word starts, with offsets in UTF-16 units."""
    assert text.command_entities(message) == entities


def test_html_becomes_text_and_entities() -> None:
    """HTML markup is parsed into plain text and entities, nested ones outer first."""
    parsed = text.outgoing(
        '  <b>Ticket <i>#42</i></b> &amp; <a href="https://x.example/">link</a>'
        '\n<pre><code class="language-python">x = 1</code></pre>  ',
        "HTML",
        None,
    )
    assert parsed == (
        "Ticket #42 & link\nx = 1",
        [
            {"offset": 0, "length": 10, "type": "bold"},
            {"offset": 7, "length": 3, "type": "italic"},
            {"offset": 13, "length": 4, "type": "text_link", "url": "https://x.example/"},
            {"offset": 18, "length": 5, "type": "pre", "language": "python"},
        ],
    )


@pytest.mark.parametrize(
    ("source", "parse_mode", "description"),
    [
        ("", None, "Bad Request: message text is empty"),
        ("   \n ", None, "Bad Request: message text is empty"),
        ("x" * 4097, None, "Bad Request: message is too long"),
        (
            "<blink>hi</blink>",
            "HTML",
            'Bad Request: can\'t parse entities: Unsupported start tag "blink" at byte offset 0',
        ),
        (
            "<b>hi",
            "HTML",
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            '"b"',
        ),
        ("hi", "Markdown2", "Bad Request: unsupported parse_mode"),
    ],
    ids=["empty", "blank", "too-long", "unsupported-tag", "unclosed-tag", "parse-mode"],
)
def test_text_refusals(source: str, parse_mode: str | None, description: str) -> None:
    """Texts Telegram refuses are refused with its 400 descriptions."""
    with pytest.raises(errors.BotApiError) as caught:
        text.outgoing(source, parse_mode, None)
    assert (caught.value.code, caught.value.description) == (400, description)


def test_longest_text_and_markdown_pass_unchanged() -> None:
    """4096 characters fit, counted after HTML parsing, and Markdown text is kept as sent."""
    longest = "й" * 4096
    assert (
        text.outgoing(longest, None, None),
        text.outgoing(f"<b>{longest}</b>", "html", None),
        text.outgoing("*hi*", "MarkdownV2", None),
    ) == (
        (longest, []),
        (longest, [{"offset": 0, "length": 4096, "type": "bold"}]),
        ("*hi*", []),
    )


def test_retry_delays_double_up_to_the_cap() -> None:
    """Webhook retries wait twice as long each time, never longer than the cap."""
    policy = pusher.RetryPolicy(first_delay=0.05, max_delay=0.3)
    assert [policy.delay(n) for n in range(1, 6)] == [0.05, 0.1, 0.2, 0.3, 0.3]


def _caused(exc: httpx.HTTPError, cause: BaseException) -> httpx.HTTPError:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("response", "exc", "message"),
    [
        (httpx.Response(502), None, "Wrong response from the webhook: 502 Bad Gateway"),
        (httpx.Response(302), None, "Wrong response from the webhook: 302 Found"),
        (None, httpx.ReadTimeout("slow"), "Read timeout expired"),
        (None, httpx.ConnectTimeout("slow"), "Connection timed out"),
        (None, httpx.ConnectError("[Errno 111] refused"), "Connection refused"),
        (
            None,
            _caused(httpx.ConnectError("dns"), socket.gaierror(-2, "Name or service not known")),
            "Failed to resolve host: Name or service not known",
        ),
        (None, httpx.RemoteProtocolError("closed"), "Connection reset by peer"),
    ],
    ids=["502", "redirect", "read-timeout", "connect-timeout", "refused", "dns", "reset"],
)
def test_push_failures_read_like_telegrams(
    response: httpx.Response | None, exc: httpx.HTTPError | None, message: str
) -> None:
    """Failed pushes are described with getWebhookInfo's wording."""
    assert pusher.failure_message(response, exc) == message


Status = membership.Status


@pytest.mark.parametrize(
    ("chat_type", "status", "refusal"),
    [
        ("private", None, None),
        ("private", Status.MEMBER, None),
        ("private", Status.KICKED, (403, "Forbidden: bot was blocked by the user")),
        ("group", Status.MEMBER, None),
        ("group", Status.ADMINISTRATOR, None),
        ("supergroup", Status.RESTRICTED, None),
        ("group", None, (403, "Forbidden: bot is not a member of the group chat")),
        ("group", Status.LEFT, (403, "Forbidden: bot is not a member of the group chat")),
        ("group", Status.KICKED, (403, "Forbidden: bot was kicked from the group chat")),
        ("supergroup", Status.LEFT, (403, "Forbidden: bot is not a member of the supergroup chat")),
        ("supergroup", Status.KICKED, (403, "Forbidden: bot was kicked from the supergroup chat")),
        ("channel", None, (403, "Forbidden: bot is not a member of the channel chat")),
    ],
)
def test_send_refusal(
    chat_type: str, status: membership.Status | None, refusal: tuple[int, str] | None
) -> None:
    """Bots in a chat may send; others get Telegram's 403 for the chat type and how they left."""
    error = membership.send_refusal(chat_type, status)
    assert (None if error is None else (error.code, error.description)) == refusal


@pytest.mark.parametrize(
    ("fixture", "chat_type"),
    [
        ("update_my_chat_member_added_to_group", "group"),
        ("update_my_chat_member_kicked_from_group", "supergroup"),
        ("update_my_chat_member_promoted_in_forum", "supergroup"),
        ("update_my_chat_member_user_blocked_bot", "private"),
    ],
)
def test_chat_member_updated_matches_telegram(fixture: str, chat_type: str) -> None:
    """The my_chat_member body built from a status change is exactly Telegram's."""
    update = load_fixture(fixture)["my_chat_member"]
    built = membership.chat_member_updated(
        chat=update["chat"],
        actor=update["from"],
        date=update["date"],
        user=update["new_chat_member"]["user"],
        old=Status(update["old_chat_member"]["status"]),
        new=Status(update["new_chat_member"]["status"]),
    )
    assert (update["chat"]["type"], built) == (chat_type, update)


def test_admins_of_basic_groups_have_no_topic_right() -> None:
    """can_manage_topics shows only for supergroup administrators."""
    user = {"id": 1, "is_bot": True, "first_name": "B"}
    group = membership.member_json(user, Status.ADMINISTRATOR, "group")
    supergroup = membership.member_json(user, Status.ADMINISTRATOR, "supergroup")
    assert (set(supergroup) - set(group), group["status"]) == (
        {"can_manage_topics"},
        "administrator",
    )
