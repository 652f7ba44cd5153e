"""The web UI over plain HTTP: signing in, redirects, the connections page and test alerts."""

from __future__ import annotations

import httpx

from tests.e2e.harness import Tgrelay, eventually
from tgrelay.groups import service as groups
from tgrelay.groups.models import ConnectionStatus, SessionState

from .harness import ANN, Telegram, browser, csrf_token, sign_in, start_token, table_rows


async def link_group(
    relay: Tgrelay, telegram: Telegram, client: httpx.AsyncClient, bot_id: int, title: str
) -> int:
    """Ann links a new supergroup to the bot through the connect page; returns its chat id."""
    started = await client.post("/ui/connect", data={"bot_id": str(bot_id), "topic": ""})
    assert started.status_code == 303, started.text
    session_id = started.headers["location"].rsplit("/", 1)[1]
    rt = relay.runtime
    view = await groups.get_session(rt, relay.workspace_id, session_id)
    assert view.links is not None
    await telegram.send_private(bot_id, ANN, f"/start {start_token(view.links.start_link)}")

    async def reached(state: SessionState) -> bool:
        found = await groups.get_session(rt, relay.workspace_id, session_id)
        return found.session.state is state

    await eventually(lambda: reached(SessionState.WAITING_GROUP))
    chat_id = await telegram.new_group(title)
    await telegram.add_bot(chat_id, bot_id, ANN)
    await eventually(lambda: reached(SessionState.CONNECTED))
    return chat_id


async def test_pages_redirect_to_sign_in_without_a_valid_cookie(relay: Tgrelay) -> None:
    """Every page, and the status route the connect page polls, sends a browser without a live session to /ui/login, dropping a stale cookie."""
    async with browser(relay) as client:
        answers = [
            await client.get(path)
            for path in ("/", "/ui/", "/ui/connections", "/ui/connect", "/ui/connect/cs_x/status")
        ]
        client.cookies.set("tgrelay_session", "not-a-session", path="/ui")
        stale = await client.get("/ui/connections")
    assert [(a.status_code, a.headers["location"]) for a in answers] == [
        (303, "/ui/"),
        (303, "/ui/login"),
        (303, "/ui/login"),
        (303, "/ui/login"),
        (303, "/ui/login"),
    ]
    assert (stale.status_code, stale.headers["location"]) == (303, "/ui/login")
    assert stale.headers["set-cookie"].startswith('tgrelay_session=""; ')


async def test_sign_in_rejects_bad_keys_and_sets_a_strict_cookie(relay: Tgrelay) -> None:
    """A malformed or unknown key gets the sign-in form again with the reason; a valid one sets an HttpOnly, SameSite=Strict session cookie scoped to /ui that is not the key, and signing out ends the session on the server."""
    async with browser(relay) as client:
        malformed = await sign_in(client, "hello")
        forged = relay.api_key[:-1] + ("A" if relay.api_key[-1] != "A" else "B")
        unknown = await sign_in(client, forged)
        good = await sign_in(client, relay.api_key)
        raw_id = client.cookies["tgrelay_session"]
        page = await client.get("/ui/connections")
        out = await client.post("/ui/logout", data={"csrf_token": csrf_token(page.text)})
        after = await client.get("/ui/connections")
        client.cookies.set("tgrelay_session", raw_id, path="/ui")  # a copy kept by a thief
        replayed = await client.get("/ui/connections")
    assert [malformed.status_code, unknown.status_code] == [401, 401]
    assert "Not signed in: malformed API key." in malformed.text
    assert "Not signed in: unknown or revoked API key." in unknown.text
    assert good.status_code == 303
    assert relay.api_key not in good.headers["set-cookie"]
    assert good.headers["set-cookie"] == (
        f"tgrelay_session={raw_id}; HttpOnly; Max-Age=604800; Path=/ui; SameSite=strict"
    )
    assert len(raw_id) == 43
    assert (page.status_code, "<h1>Connections</h1>" in page.text) == (200, True)
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login")
    assert (after.status_code, after.headers["location"]) == (303, "/ui/login")
    assert (replayed.status_code, replayed.headers["location"]) == (303, "/ui/login")


async def test_connections_page_lists_groups_and_sends_test_alerts(
    relay: Tgrelay, telegram: Telegram
) -> None:
    """The connections page lists a linked group, its button queues a test alert that arrives in the group, and the result names the notification."""
    bot = await telegram.new_bot("alerts_bot")
    await relay.connect_bot(bot["token"])
    async with browser(relay, relay.api_key) as client:
        empty = await client.get("/ui/connections")
        chat_id = await link_group(relay, telegram, client, bot["id"], "Ops room")
        listed = await client.get("/ui/connections")
        [connection] = await groups.list_connections(relay.runtime, relay.workspace_id)
        sent = await client.post(f"/ui/connections/{connection.id}/test", follow_redirects=True)
        missing = await client.post("/ui/connections/conn_nope/test")
    assert "No groups are connected yet." in empty.text
    assert table_rows(listed.text) == [
        ["Ops room", str(chat_id), "supergroup", "—", "active", "Send test alert"]
    ]
    [notification_id] = sent.url.params.get_list("sent")
    found = await groups.get_notification(relay.runtime, relay.workspace_id, notification_id)
    assert f"Test alert {notification_id}: {found.status.value}" in sent.text

    async def delivered() -> bool:
        messages = await telegram.client.get(f"/_emulator/chats/{chat_id}/messages")
        # The group first got the bot's greeting on connecting; the test alert comes last.
        return [m["text"] for m in messages.json()][-1:] == ["Test alert from tgrelay"]

    await eventually(delivered)
    assert missing.status_code == 404
    assert "No test alert sent: no connection conn_nope" in missing.text


async def test_test_alert_to_a_group_without_the_bot_says_why(
    relay: Tgrelay, telegram: Telegram
) -> None:
    """When the bot was removed from a linked group, the page lists it as bot_removed and its test alert answers 409 with the reason instead of failing."""
    bot = await telegram.new_bot("alerts_bot")
    await relay.connect_bot(bot["token"])
    async with browser(relay, relay.api_key) as client:
        chat_id = await link_group(relay, telegram, client, bot["id"], "Ops room")
        await telegram.remove_bot(chat_id, bot["id"], ANN)
        rt = relay.runtime

        async def removed() -> bool:
            [found] = await groups.list_connections(rt, relay.workspace_id)
            return found.status is ConnectionStatus.BOT_REMOVED

        await eventually(removed)
        [connection] = await groups.list_connections(rt, relay.workspace_id)
        refused = await client.post(f"/ui/connections/{connection.id}/test")
    assert refused.status_code == 409
    assert table_rows(refused.text) == [
        ["Ops room", str(chat_id), "supergroup", "—", "bot removed", "Send test alert"]
    ]
    assert (
        f"No test alert sent: connection {connection.id} is bot_removed: "
        f"{connection.status_reason}" in refused.text
    )


async def test_sign_in_over_https_marks_the_cookie_secure(relay: Tgrelay) -> None:
    """A page served over https sets the session cookie with Secure, so browsers never send it over plain http."""
    transport = httpx.ASGITransport(app=relay.app)  # the running app: its lifespan has run
    async with httpx.AsyncClient(
        transport=transport, base_url="https://tgrelay.test", headers={"Origin": relay.base_url}
    ) as client:
        form = await client.get("/ui/login")
        signed = await client.post(
            "/ui/login", data={"api_key": relay.api_key, "csrf_token": csrf_token(form.text)}
        )
    assert form.headers["set-cookie"].endswith("Path=/ui/login; SameSite=strict; Secure")
    assert signed.headers["set-cookie"] == (
        f"tgrelay_session={signed.cookies['tgrelay_session']}; HttpOnly; Max-Age=604800; "
        "Path=/ui; SameSite=strict; Secure"
    )
