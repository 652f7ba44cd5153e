"""HTTP errors as RFC 9457 problem+json, mapped once from tgrelay's error tree."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from tgrelay import errors

PROBLEM_JSON = "application/problem+json"

_STATUS: list[tuple[type[errors.TgrelayError], int]] = [
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.InvalidInput, 422),
    (errors.AuthenticationFailed, 401),
    (errors.Forbidden, 403),
    (errors.StorageUnavailable, 503),
    (errors.TelegramUnauthorized, 422),  # the token the caller gave was refused by Telegram
    (errors.TelegramUnavailable, 502),
    (errors.TelegramError, 502),
    (errors.ConfigurationError, 500),
]


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_of(exc: errors.TgrelayError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def install(app: FastAPI) -> None:
    """Register handlers so every API error answers problem+json."""

    async def on_tgrelay_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.TgrelayError)
        return problem(status_of(exc), type(exc).__name__, exc.message)

    async def on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        issues = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return problem(
            422, "InvalidRequest", "the request does not match its schema", errors=issues
        )

    async def on_http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return problem(exc.status_code, "HTTPError", str(exc.detail))

    app.add_exception_handler(errors.TgrelayError, on_tgrelay_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
