"""Who is signed in to the web UI: the API key kept in an HttpOnly cookie.

The cookie holds the key itself and is checked on every request with the same
`authenticate` the API uses, so revoking a key signs its browsers out at once.

CSRF: the cookie is SameSite=Strict, so browsers send it only on requests that start from
our own pages; every state-changing route is a POST from one of those pages' forms, and no
GET changes anything. A forged cross-site form therefore arrives without the cookie.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

COOKIE = "tgrelay_key"
COOKIE_PATH = "/ui"
LOGIN_PATH = "/ui/login"


class LoginRequired(Exception):
    """No valid API key in the cookie: the browser goes to the sign-in page."""


async def principal(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Principal:
    """FastAPI dependency: the workspace of the signed-in browser, or LoginRequired."""
    presented = request.cookies.get(COOKIE, "")
    if not presented:
        raise LoginRequired()
    try:
        return await workspaces.authenticate(rt.db, presented)
    except errors.AuthenticationFailed as exc:
        raise LoginRequired() from exc


SignedIn = Annotated[Principal, Depends(principal)]


def sign_in(response: Response, request: Request, api_key: str) -> None:
    """Keep a verified key in the browser; Secure whenever the page itself came over https."""
    response.set_cookie(
        COOKIE,
        api_key,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def sign_out(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


async def on_login_required(request: Request, _exc: Exception) -> Response:
    """Exception handler: send the browser to sign in, dropping a cookie that stopped working."""
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    if COOKIE in request.cookies:
        sign_out(response)
    return response
