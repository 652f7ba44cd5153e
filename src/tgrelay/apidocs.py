"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc`, on files we serve.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank on a machine
without internet. The `fastapi-offline` package ships those files (swagger-ui-dist 5,
redoc 2); we mount its folder and point the pages at it. Each page also carries a
Content-Security-Policy that lets the browser load nothing from another origin: ReDoc's
side menu asks for a logo from cdn.redoc.ly, and the policy stops that request unsent.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS_PATH = "/docs-assets"
# The package's data folder: swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js.
ASSETS_DIR = Path(str(resources.files("fastapi_offline") / "static"))
# Swagger UI's default validatorUrl is validator.swagger.io; null keeps the page from ever
# calling it.
SWAGGER_PARAMETERS = {"validatorUrl": None}
# Both pages start their bundle with an inline script or style (FastAPI's templates), ReDoc
# styles itself with inline <style> tags and searches in a worker made from a blob: URL.
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",
        "frame-ancestors 'none'",
    ]
)


def install(api: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve both pages and their files; build `api` with docs_url=None and redoc_url=None."""
    api.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = api.openapi_url or "/openapi.json"

    @api.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _own_origin_only(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{api.title} API",
                swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
                swagger_ui_parameters=SWAGGER_PARAMETERS,
            )
        )

    @api.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _own_origin_only(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{api.title} API",
                redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
                with_google_fonts=False,
            )
        )


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page
