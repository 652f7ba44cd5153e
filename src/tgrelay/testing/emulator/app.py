"""The emulator's ASGI app: the Bot API and the control surface on one port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tgrelay.testing.emulator import botapi, control, errors

if TYPE_CHECKING:
    from tgrelay.testing.emulator.service import Emulator


def build(emulator: Emulator) -> Starlette:
    """Routes for `emulator`; the app's lifespan starts and closes its background work."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        emulator.start()
        yield
        await emulator.aclose()

    async def not_found(request: Request, exc: Exception) -> Response:
        # Telegram answers unknown paths, like unknown methods, with a JSON 404.
        return botapi.error_response(errors.not_found())

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return botapi.json_response(
            {"ok": False, "error_code": exc.status_code, "description": exc.detail},
            exc.status_code,
        )

    return Starlette(
        routes=[*control.routes(emulator), *botapi.routes(emulator)],
        lifespan=lifespan,
        exception_handlers={404: not_found, HTTPException: http_error},
    )
