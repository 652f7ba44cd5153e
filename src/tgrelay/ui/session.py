"""Who is signed in to the web UI, and whether a state-changing request really comes from us.

Signing in with an API key starts a server-side session (`workspaces.sessions`): the
HttpOnly cookie holds a random id, never the key. Each request reads the session, so
sign-out and revoking the key end it at once.

CSRF: SameSite=Strict does not help against another port of the same host (same site), so
every POST (`guard`, a dependency of every UI route) must (1) come from our own origin
by the browser's word (`comes_from`), and (2) carry the session's CSRF
token in a hidden form field. The sign-in form, before any session, carries a token that
must equal the one in its own short cookie (double submit); the origin check is what stops
a page of another origin there, the token is the second lock.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from tgrelay.runtime import Runtime, runtime
from tgrelay.settings import Settings
from tgrelay.workspaces import sessions
from tgrelay.workspaces.models import KeyScope, Principal

COOKIE = "tgrelay_session"
LOGIN_COOKIE = "tgrelay_login"  # the sign-in form's double-submit token
COOKIE_PATH = "/ui"
LOGIN_PATH = "/ui/login"
LOGOUT_PATH = "/ui/logout"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_STATE = "ui_session"  # request.state attribute: the session this request was found to have


class LoginRequired(Exception):
    """No live session in the cookie: the browser goes to the sign-in page."""


class RequestRefused(Exception):
    """A state-changing request that did not come from one of our own pages (403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def own_origin(request: Request, settings: Settings) -> str:
    """The service's origin: TGRELAY_PUBLIC_URL's when set, else the one the request names."""
    if settings.public_url is not None:
        parts = urlsplit(settings.public_url)
        return f"{parts.scheme}://{parts.netloc}".lower()
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def comes_from(request: Request, own: str) -> bool:
    """Whether the browser says the request was started by a page of `own` origin.

    Origin first, then Referer's origin. Our own `Referrer-Policy: no-referrer` makes
    Chromium send `Origin: null` and no Referer on our own form posts, so then the Fetch
    Metadata header decides: `Sec-Fetch-Site: same-origin` is set by the browser (pages
    cannot forge it) only when the initiator has the target's origin. Nothing at all: refused.
    """
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        return origin.lower() == own
    referer = request.headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() == own
    return request.headers.get("sec-fetch-site") == "same-origin"


def secure_cookies(request: Request, settings: Settings) -> bool:
    """Secure when the public URL is https, or this request reached us over https (uvicorn
    takes the scheme from X-Forwarded-Proto only from TGRELAY_FORWARDED_ALLOW_IPS)."""
    public_https = settings.public_url is not None and settings.public_url.startswith("https://")
    return public_https or request.url.scheme == "https"


async def current(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> sessions.UiSession:
    """FastAPI dependency: the browser's live session, or LoginRequired."""
    found: sessions.UiSession | None = getattr(request.state, _STATE, None)
    if found is not None:
        return found
    raw_id = request.cookies.get(COOKIE, "")
    if raw_id:
        found = await sessions.find(rt.db, raw_id, now=rt.clock())
    if found is None:
        raise LoginRequired()
    setattr(request.state, _STATE, found)
    return found


def found_session(request: Request) -> sessions.UiSession | None:
    """The session this request was found to have, if it was looked up."""
    found: sessions.UiSession | None = getattr(request.state, _STATE, None)
    return found


async def principal(session: Annotated[sessions.UiSession, Depends(current)]) -> Principal:
    """FastAPI dependency: the workspace of the signed-in browser, or LoginRequired."""
    return session.principal


SignedIn = Annotated[Principal, Depends(principal)]


async def guard(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> None:
    """FastAPI dependency of every UI route: state changes need our origin and a CSRF token.

    A read key's session may browse and sign out, nothing else.
    """
    if request.method in SAFE_METHODS:
        return
    own = own_origin(request, rt.settings)
    if not comes_from(request, own):
        raise RequestRefused(f"this request did not come from a page of {own}")
    presented = (await request.form()).get(CSRF_FIELD)
    if request.url.path == LOGIN_PATH:
        expected = request.cookies.get(LOGIN_COOKIE, "")
    else:
        found = await current(request, rt)
        if found.scope is not KeyScope.ADMIN and request.url.path != LOGOUT_PATH:
            raise RequestRefused(
                f"you signed in with a key of the {found.scope.value!r} scope, which cannot "
                "change anything; sign in with an admin key"
            )
        expected = found.csrf_token
    if not (isinstance(presented, str) and expected and hmac.compare_digest(presented, expected)):
        raise RequestRefused("the form's security token is missing or stale: reload the page")


def login_token(request: Request) -> str:
    """The sign-in form's token: the one in the browser's cookie, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)


def keep_login_token(response: Response, request: Request, settings: Settings, token: str) -> None:
    """Set (or refresh) the sign-in token's cookie, for an hour, on the sign-in page only."""
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        path=LOGIN_PATH,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, settings),
    )


def sign_in(response: Response, request: Request, settings: Settings, raw_id: str) -> None:
    """Hand the browser its session id; the cookie ends with the browser or the session."""
    response.set_cookie(
        COOKIE,
        raw_id,
        path=COOKIE_PATH,
        max_age=int(sessions.ABSOLUTE.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, settings),
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


async def on_login_required(request: Request, _exc: Exception) -> Response:
    """Exception handler: send the browser to sign in, dropping a cookie that stopped working."""
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    if COOKIE in request.cookies:
        sign_out(response)
    return response
