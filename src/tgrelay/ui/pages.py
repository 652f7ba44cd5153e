"""The web UI's routes: sign in, link a Telegram group by QR code, list connections, test them.

Pages are rendered on the server with Jinja2 and work without JavaScript; small static
scripts only follow live status (a connect session, queued alerts) and add copy buttons.
The other pages (bots, updates, notifications, endpoints, audit) live in their own
`tgrelay.ui` modules and render through `render` here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from math import ceil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from tgrelay import errors
from tgrelay.bots import service as bots
from tgrelay.bots.models import BotStatus
from tgrelay.groups import qr as groups_qr
from tgrelay.groups import service as groups
from tgrelay.groups.models import SessionState
from tgrelay.runtime import Runtime, runtime
from tgrelay.ui import filters, session, signin_limit
from tgrelay.ui.session import SignedIn
from tgrelay.workspaces import keys, sessions

HERE = Path(__file__).parent
STATIC_PATH = "/ui/static"
TEST_ALERT_TEXT = "Test alert from tgrelay"
# A forum topic name is 1–128 characters (Bot API, createForumTopic).
TOPIC_MAX_LENGTH = 128


def when(moment: datetime | None) -> str:
    """A stored instant as the pages show it: UTC, to the second (Jinja filter `when`)."""
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters.update(
    when=when,
    ago=filters.relative,
    left=filters.time_left,
    exact=filters.exact,
    iso=filters.iso,
    tone=filters.tone,
    words=filters.words,
    as_json=filters.as_json,
)
router = APIRouter(include_in_schema=False)
Rt = Annotated[Runtime, Depends(runtime)]


def install(api: FastAPI) -> None:
    """Add the pages, their static files and the sign-in redirect to the app."""
    # Imported here: these pages render through this module.
    from tgrelay.ui import (
        agents,
        api_keys,
        articles,
        audit,
        bots,
        conversations,
        desks,
        endpoints,
        flows,
        notifications,
        report,
        snippets,
        ticket,
        tickets,
        updates,
    )

    # The guard checks origin and CSRF token of every state-changing request of every page.
    guarded = [Depends(session.guard)]
    api.include_router(router, dependencies=guarded)
    for module in (
        bots,
        updates,
        notifications,
        endpoints,
        audit,
        api_keys,
        desks,
        agents,
        snippets,
        articles,
        report,
        tickets,
        ticket,
        flows,
        conversations,
    ):
        api.include_router(module.router, dependencies=guarded)
    api.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="ui-static")
    api.add_exception_handler(session.LoginRequired, session.on_login_required)
    api.add_exception_handler(session.RequestRefused, on_refused)
    api.state.signin_limiter = signin_limit.SignInLimiter(signin_limit.Policy())


def status_line(view: groups.SessionView) -> tuple[SessionState, str]:
    """What the connect page says about a session, in the words the user sees."""
    found = view.session
    match found.state:
        case SessionState.WAITING_PRIVATE:
            return found.state, "Waiting for /start in a private chat"
        case SessionState.WAITING_GROUP:
            who = found.user
            name = (who.first_name or who.username or str(who.id)) if who else "someone"
            return found.state, f"Verified as {name} — waiting for group"
        case SessionState.CONNECTED:
            chat = view.connection
            title = (chat.title or str(chat.chat_id)) if chat else "a group"
            return found.state, f"Connected to {title}"
        case SessionState.EXPIRED:
            return found.state, "Expired"
        case SessionState.CANCELLED:
            return found.state, "Cancelled"


# --- signing in ----------------------------------------------------------------------------


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=303)


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """Browsers ask for it on every page that names no icon (the API docs, JSON)."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


@router.get("/ui/")
async def home(_principal: SignedIn) -> RedirectResponse:
    return RedirectResponse("/ui/connections", status_code=303)


@router.get("/ui/login")
async def login_form(request: Request, rt: Rt) -> Response:
    return _login_page(request, rt)


@router.post("/ui/login")
async def login(request: Request, rt: Rt, api_key: Annotated[str, Form()] = "") -> Response:
    limiter: signin_limit.SignInLimiter = request.app.state.signin_limiter
    address = request.client.host if request.client else "unknown"
    now = rt.clock()
    wait = limiter.retry_after(address, now)
    if wait is not None:
        response = _login_page(
            request,
            rt,
            status_code=429,
            error=f"Too many failed sign-ins from your address: try again in {ceil(wait)} s.",
        )
        response.headers["Retry-After"] = str(ceil(wait))
        return response
    try:
        key = await keys.verify(rt.db, api_key.strip())
    except errors.AuthenticationFailed as exc:
        limiter.failed(address, now)
        return _login_page(request, rt, status_code=401, error=f"Not signed in: {exc.message}.")
    await keys.record_use(rt.db, key, now=now)
    raw_id, _ = await sessions.start(rt.db, key, now=now)
    response = RedirectResponse("/ui/connections", status_code=303)
    session.sign_in(response, request, rt.settings, raw_id)
    return response


@router.post("/ui/logout")
async def logout(request: Request, rt: Rt, _principal: SignedIn) -> RedirectResponse:
    await sessions.end(rt.db, request.cookies.get(session.COOKIE, ""))
    response = RedirectResponse(session.LOGIN_PATH, status_code=303)
    session.sign_out(response)
    return response


def _login_page(
    request: Request, rt: Runtime, *, status_code: int = 200, error: str | None = None
) -> Response:
    token = session.login_token(request)
    response = render(request, "login.html", status_code=status_code, error=error, csrf_token=token)
    session.keep_login_token(response, request, rt.settings, token)
    return response


async def on_refused(request: Request, exc: Exception) -> Response:
    """Exception handler: a state change that did not come from our pages is refused."""
    assert isinstance(exc, session.RequestRefused)
    return render(request, "refused.html", status_code=403, error=f"Refused: {exc.reason}.")


# --- connecting a group --------------------------------------------------------------------


@router.get("/ui/connect")
async def connect_form(request: Request, rt: Rt, principal: SignedIn) -> Response:
    return await _connect_form(request, rt, principal.workspace_id)


@router.post("/ui/connect")
async def start_connect(
    request: Request,
    rt: Rt,
    principal: SignedIn,
    bot_id: Annotated[int, Form()],
    topic: Annotated[str, Form(max_length=TOPIC_MAX_LENGTH)] = "",
) -> Response:
    try:
        view = await groups.create_session(
            rt, principal, bot_id=bot_id, topic=topic.strip() or None
        )
    except (errors.NotFound, errors.Conflict, errors.InvalidInput) as exc:
        return await _connect_form(
            request, rt, principal.workspace_id, status_code=409, error=exc.message
        )
    return RedirectResponse(f"/ui/connect/{view.session.id}", status_code=303)


@router.get("/ui/connect/{session_id}")
async def connect_page(request: Request, rt: Rt, principal: SignedIn, session_id: str) -> Response:
    try:
        view = await groups.get_session(rt, principal.workspace_id, session_id)
    except errors.NotFound as exc:
        return render(request, "not_found.html", status_code=404, error=exc.message)
    state, text = status_line(view)
    qr = None
    if view.links is not None:
        # segno builds the SVG from our own link; nothing user-supplied reaches the markup.
        qr = Markup(groups_qr.svg(view.links.start_link, scale=4))  # noqa: S704
    return render(
        request,
        "connect_session.html",
        view=view,
        state=state.value,
        status_text=text,
        qr=qr,
        time_left=filters.time_left(view.session.expires_at, rt.clock()),
    )


@router.get("/ui/connect/{session_id}/status")
async def connect_status(rt: Rt, principal: SignedIn, session_id: str) -> JSONResponse:
    """What the connect page polls once a second."""
    try:
        view = await groups.get_session(rt, principal.workspace_id, session_id)
    except errors.NotFound as exc:
        return JSONResponse({"error": exc.message}, status_code=404)
    state, text = status_line(view)
    left = filters.time_left(view.session.expires_at, rt.clock())
    return JSONResponse({"state": state.value, "text": text, "time_left": left})


# --- connections ---------------------------------------------------------------------------


@router.get("/ui/connections")
async def connections_page(
    request: Request, rt: Rt, principal: SignedIn, sent: str | None = None
) -> Response:
    notice = None
    if sent is not None:
        # The redirect names the notification; its status is read back, never echoed.
        try:
            found = await groups.get_notification(rt, principal.workspace_id, sent)
        except errors.NotFound:
            pass
        else:
            notice = f"Test alert {found.id}: {found.status.value}"
    return await _connections(request, rt, principal.workspace_id, notice=notice)


@router.post("/ui/connections/{connection_id}/test")
async def send_test_alert(
    request: Request, rt: Rt, principal: SignedIn, connection_id: str
) -> Response:
    try:
        notification, _ = await groups.notify(
            rt,
            principal,
            connection_id=connection_id,
            text=TEST_ALERT_TEXT,
            parse_mode=None,
            idempotency_key=None,
        )
    except (errors.NotFound, errors.Conflict) as exc:
        status = 404 if isinstance(exc, errors.NotFound) else 409
        return await _connections(
            request,
            rt,
            principal.workspace_id,
            status_code=status,
            error=f"No test alert sent: {exc.message}",
        )
    return RedirectResponse(f"/ui/connections?sent={notification.id}", status_code=303)


# --- rendering -----------------------------------------------------------------------------


async def _connect_form(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    usable = [
        bot
        for bot in await bots.list_bots(rt, workspace_id)
        if bot.status is not BotStatus.DISCONNECTED
    ]
    return render(request, "connect.html", status_code=status_code, bots=usable, error=error)


async def _connections(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    return render(
        request,
        "connections.html",
        status_code=status_code,
        connections=await groups.list_connections(rt, workspace_id),
        notice=notice,
        error=error,
    )


def render(request: Request, name: str, *, status_code: int = 200, **context: Any) -> Response:
    """A page from the templates, with what the shared layout needs."""
    return templates.TemplateResponse(
        request, name, {**_context(request, name), **context}, status_code=status_code
    )


def _context(request: Request, name: str) -> dict[str, Any]:
    found = session.found_session(request)
    return {
        "signed_in": found is not None and name != "login.html",
        "static": STATIC_PATH,
        # Relative times are computed here, on the runtime's clock, so they read without JS.
        "now": runtime(request).clock(),
        # Every state-changing form carries it (session.guard).
        "csrf_token": found.csrf_token if found is not None else "",
    }
