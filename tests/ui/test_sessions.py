"""UI sessions over plain HTTP: expiry on a movable clock, revocation, CSRF and origin checks,
read-only sessions, security headers, sign-in limits and the API keys page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from tests.e2e.harness import (
    Tgrelay,
    key_id,
    polling_relay,
)
from tgrelay import security_headers
from tgrelay.settings import Settings
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.ui import session
from tgrelay.workspaces import keys
from tgrelay.workspaces.models import KeyScope, Principal

from .harness import browser, csrf_token, sign_in, table_rows

START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
HOUR = 3600.0


@pytest.fixture
def clock() -> Clock:
    return Clock(start=START)


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path, clock: Clock) -> AsyncIterator[Tgrelay]:
    async with polling_relay(emulator, tmp_path, clock) as relay:
        yield relay


async def new_key(relay: Tgrelay, scope: KeyScope, name: str = "another") -> tuple[str, str]:
    rt = relay.runtime
    owner = Principal(workspace_id=relay.workspace_id, actor="test")
    key, plaintext = await keys.create(rt.db, owner, name=name, scope=scope, now=rt.clock())
    return key.id, plaintext


async def status(client: httpx.AsyncClient, path: str = "/ui/connections") -> int:
    return (await client.get(path)).status_code


async def test_a_session_ends_after_12_idle_hours(relay: Tgrelay, clock: Clock) -> None:
    """Use within 12 hours keeps a session alive; 12 hours without use end it."""
    async with browser(relay, relay.api_key) as client:
        clock.advance(11.9 * HOUR)
        kept = await status(client)
        clock.advance(11.9 * HOUR)
        still = await status(client)
        clock.advance(12 * HOUR)
        ended = await status(client)
    assert [kept, still, ended] == [200, 200, 303]


async def test_a_session_ends_7_days_after_sign_in_however_used(
    relay: Tgrelay, clock: Clock
) -> None:
    """A session in use every 10 hours still ends 7 days after sign-in."""
    async with browser(relay, relay.api_key) as client:
        answers = []
        for _ in range(16):  # 160 hours: past the 168th only with the next step
            clock.advance(10 * HOUR)
            answers.append(await status(client))
        clock.advance(8 * HOUR)
        last = await status(client)
    assert answers == [200] * 16
    assert last == 303


async def test_revoking_a_key_ends_its_sessions(relay: Tgrelay) -> None:
    """A browser signed in with a key is signed out as soon as the key is revoked."""
    key_id, plaintext = await new_key(relay, KeyScope.ADMIN)
    async with browser(relay, plaintext) as client:
        before = await status(client)
        revoked = await relay.api.delete(f"/v1/api-keys/{key_id}")
        after = await client.get("/ui/connections")
    assert [before, revoked.status_code] == [200, 204]
    assert (after.status_code, after.headers["location"]) == (303, "/ui/login")


async def test_changes_need_the_session_token_and_our_origin(relay: Tgrelay) -> None:
    """A POST without the token, with another session's token, or from another origin is refused with 403 and changes nothing."""
    async with browser(relay, relay.api_key) as client, browser(relay, relay.api_key) as other:
        own = csrf_token((await client.get("/ui/api-keys")).text)
        theirs = csrf_token((await other.get("/ui/api-keys")).text)
        form = {"name": "sneaky", "scope": "admin"}
        refused = [
            await client.post("/ui/api-keys", data={**form, "csrf_token": ""}),
            await client.post("/ui/api-keys", data={**form, "csrf_token": theirs}),
            await client.post(
                "/ui/api-keys",
                data={**form, "csrf_token": own},
                headers={"Origin": "http://127.0.0.1:1"},
            ),
            await client.post(
                "/ui/api-keys",
                data={**form, "csrf_token": own},
                headers={"Origin": "null", "Referer": "http://evil.test/page"},
            ),
            await client.post(
                "/ui/api-keys",
                data={**form, "csrf_token": own},
                headers={"Origin": "null", "Sec-Fetch-Site": "same-site"},
            ),
        ]
        listed = await relay.api.get("/v1/api-keys")
        by_referer = await client.post(
            "/ui/api-keys",
            data={"name": "by referer", "scope": "read", "csrf_token": own},
            headers={"Origin": "null", "Referer": f"{relay.base_url}/ui/api-keys"},
        )
        by_fetch_metadata = await client.post(
            "/ui/api-keys",
            data={"name": "by fetch metadata", "scope": "read", "csrf_token": own},
            headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        )
    assert [r.status_code for r in refused] == [403] * 5
    assert "Refused: the form&#39;s security token is missing or stale" in refused[0].text
    assert f"Refused: this request did not come from a page of {relay.base_url}" in refused[2].text
    assert [k["name"] for k in listed.json()] == ["first key"]
    assert [by_referer.status_code, by_fetch_metadata.status_code] == [200, 200]


async def test_sign_in_needs_the_forms_token_and_our_origin(relay: Tgrelay) -> None:
    """A sign-in post without the form's token, or from another origin, is refused and sets no session."""
    async with httpx.AsyncClient(base_url=relay.base_url) as client:
        token = csrf_token((await client.get("/ui/login")).text)
        no_token = await client.post(
            "/ui/login", data={"api_key": relay.api_key}, headers={"Origin": relay.base_url}
        )
        elsewhere = await client.post(
            "/ui/login",
            data={"api_key": relay.api_key, "csrf_token": token},
            headers={"Origin": "http://127.0.0.1:1"},
        )
        good = await client.post(
            "/ui/login",
            data={"api_key": relay.api_key, "csrf_token": token},
            headers={"Origin": relay.base_url},
        )
    assert [no_token.status_code, elsewhere.status_code, good.status_code] == [403, 403, 303]
    assert "tgrelay_session" not in no_token.headers.get("set-cookie", "")
    assert "tgrelay_session" not in elsewhere.headers.get("set-cookie", "")


async def test_a_read_key_session_browses_but_changes_nothing(relay: Tgrelay) -> None:
    """Signed in with a read key, pages show and sign-out works; every change is refused with 403."""
    _, plaintext = await new_key(relay, KeyScope.READ)
    async with browser(relay, plaintext) as client:
        pages = [await status(client, p) for p in ("/ui/bots", "/ui/api-keys", "/ui/endpoints")]
        created = await client.post("/ui/api-keys", data={"name": "mine", "scope": "admin"})
        connected = await client.post("/ui/bots", data={"token": "123456:" + "A" * 35})
        out = await client.post("/ui/logout")
    assert pages == [200, 200, 200]
    assert [created.status_code, connected.status_code] == [403, 403]
    assert "Refused: you signed in with a key of the &#39;read&#39; scope" in created.text
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login")


async def test_every_response_forbids_framing_sniffing_referrers_and_inline_script(
    relay: Tgrelay,
) -> None:
    """Pages, static files, redirects and API answers carry the security headers; the API docs keep their own policy."""
    expected = {
        "content-security-policy": security_headers.POLICY,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }
    async with browser(relay, relay.api_key) as client:
        answers = [
            await client.get(path)
            for path in ("/ui/login", "/ui/connections", "/ui/static/ui.css", "/ui/", "/healthz")
        ]
        docs = await client.get("/docs")
    for answer in answers:
        assert {name: answer.headers.get(name) for name in expected} == expected, answer.url
    assert "'unsafe-inline'" not in security_headers.POLICY
    assert "frame-ancestors 'none'" in security_headers.POLICY
    assert "'unsafe-inline'" in docs.headers["content-security-policy"]
    assert docs.headers["x-frame-options"] == "DENY"


def test_templates_have_no_inline_script_or_handlers() -> None:
    """No template carries an inline <script> body or an on…= handler: the policy would block them."""
    inline = re.compile(r"<script(?![^>]*\ssrc=)|\son[a-z]+\s*=", re.IGNORECASE)
    templates = Path(session.__file__).parent / "templates"
    offending = [
        f"{path.name}: {match.group(0)}"
        for path in sorted(templates.glob("*.html"))
        for match in inline.finditer(path.read_text())
    ]
    assert offending == []


async def test_failed_sign_ins_are_limited_per_address(relay: Tgrelay, clock: Clock) -> None:
    """After 10 failed sign-ins in 10 minutes an address gets 429 with Retry-After, even with a valid key, until the window passes."""
    forged = relay.api_key[:-1] + ("A" if relay.api_key[-1] != "A" else "B")
    async with browser(relay) as client:
        failures = [(await sign_in(client, forged)).status_code for _ in range(10)]
        clock.advance(60)
        limited = await sign_in(client, relay.api_key)
        clock.advance(540)
        allowed = await sign_in(client, relay.api_key)
    assert failures == [401] * 10
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "540")
    assert "Too many failed sign-ins from your address: try again in 540 s." in limited.text
    assert allowed.status_code == 303


def request_to(url: str, headers: dict[str, str] | None = None) -> Request:
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    raw = [(b"host", host.encode())] + [
        (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
    ]
    return Request(
        {"type": "http", "scheme": scheme, "path": "/" + path, "headers": raw, "query_string": b""}
    )


@pytest.mark.parametrize(
    ("public_url", "url", "secure"),
    [
        (None, "http://127.0.0.1:8000/ui/login", False),
        (None, "https://relay.example/ui/login", True),  # uvicorn's scheme: a trusted proxy's
        ("https://relay.example", "http://127.0.0.1:8000/ui/login", True),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/ui/login", False),
    ],
)
def test_cookies_are_secure_behind_https(public_url: str | None, url: str, secure: bool) -> None:
    """Cookies are Secure when the public URL is https or the request arrived over https."""
    settings = Settings(public_url=public_url)
    assert session.secure_cookies(request_to(url), settings) is secure


@pytest.mark.parametrize(
    ("public_url", "url", "own"),
    [
        (None, "http://127.0.0.1:8000/ui/login", "http://127.0.0.1:8000"),
        ("https://Relay.Example/base", "http://10.0.0.5:8000/ui/login", "https://relay.example"),
    ],
)
def test_own_origin_is_the_public_urls_or_the_requests(
    public_url: str | None, url: str, own: str
) -> None:
    """The service's origin is TGRELAY_PUBLIC_URL's when set, else the request's own."""
    settings = Settings(public_url=public_url)
    assert session.own_origin(request_to(url), settings) == own


async def test_api_keys_page_creates_lists_and_revokes(relay: Tgrelay, clock: Clock) -> None:
    """The page shows a new key once, lists keys without secrets, refuses the last admin key and revoking one's own key signs out."""
    clock.advance(1)  # listed oldest first
    second_id, second = await new_key(relay, KeyScope.ADMIN, name="second admin")
    first_id = key_id(relay.api_key)
    async with browser(relay, second) as client:
        clock.advance(1)
        created = await client.post("/ui/api-keys", data={"name": "CI", "scope": "read"})
        shown = created.text.split('id="new-key-value">')[1].split("<")[0]
        reloaded = await client.get("/ui/api-keys")
        revoked_first = await client.post(f"/ui/api-keys/{first_id}/revoke", follow_redirects=True)
        last = await client.post(f"/ui/api-keys/{second_id}/revoke")
        await new_key(relay, KeyScope.ADMIN, name="third admin")
        own = await client.post(f"/ui/api-keys/{second_id}/revoke", follow_redirects=True)
    assert created.status_code == 200
    assert (await keys.verify(relay.runtime.db, shown)).name == "CI"
    assert shown not in reloaded.text
    assert [row[:3] for row in table_rows(reloaded.text)] == [
        ["first key", f"{first_id}_…", "admin"],
        ["second admin", f"{second_id}_…", "admin"],
        ["CI", f"{key_id(shown)}_…", "read"],
    ]
    assert f"Revoked {first_id}." in revoked_first.text
    assert last.status_code == 409
    assert f"Not revoked: {second_id} is the workspace&#39;s last admin key" in last.text
    assert [str(r.url.path) for r in own.history] == [
        "/ui/api-keys/" + second_id + "/revoke",
        "/ui/api-keys",
    ]
    assert own.url.path == "/ui/login"
