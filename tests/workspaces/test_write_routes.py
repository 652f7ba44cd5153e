"""Every route that can change something demands an admin key (API) or a CSRF-checked session (UI).

The test walks the assembled app's routes, so a write route added later without the
dependency fails here, not in a security review.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import SecretStr

from tgrelay.app import TgrelayApp
from tgrelay.settings import Settings
from tgrelay.ui import session
from tgrelay.workspaces import service as workspaces_service

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from calls(sub)


def write_routes(tmp_path: Path) -> list[RouteContext]:
    """The app's routes with a writing method, routers' prefixes and dependencies applied."""
    settings = Settings(data_dir=tmp_path, secret_keys=(SecretStr(Fernet.generate_key().decode()),))
    return [
        route
        for route in iter_route_contexts(TgrelayApp(settings).api.routes)
        if isinstance(route.original_route, APIRoute) and (route.methods or set()) & WRITES
    ]


def test_every_api_write_route_needs_an_admin_key(tmp_path: Path) -> None:
    """Each POST/PUT/PATCH/DELETE route outside the UI depends on AdminPrincipal."""
    api_routes = [r for r in write_routes(tmp_path) if not (r.path or "").startswith("/ui")]
    lacking = [
        f"{sorted(r.methods or ())} {r.path}"
        for r in api_routes
        if workspaces_service.admin_principal not in set(calls(r.dependant))
    ]
    assert len(api_routes) >= 18  # bots, endpoints, deliveries, groups, notifications, inbox, keys
    assert lacking == []


def test_every_ui_write_route_checks_csrf_and_origin(tmp_path: Path) -> None:
    """Each state-changing UI route (login included) depends on the session guard."""
    ui_routes = [r for r in write_routes(tmp_path) if (r.path or "").startswith("/ui")]
    lacking = [
        f"{sorted(r.methods or ())} {r.path}"
        for r in ui_routes
        if session.guard not in set(calls(r.dependant))
    ]
    assert "/ui/login" in {r.path for r in ui_routes}
    assert lacking == []
