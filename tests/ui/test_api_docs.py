"""The API docs pages (/docs, /redoc) work with no network: every file they need is ours."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page, Route, expect

from tests.e2e.harness import Tgrelay

from .conftest import needs_chromium

pytestmark = pytest.mark.slow

SWAGGER_FILES = ["/docs-assets/swagger-ui.css", "/docs-assets/swagger-ui-bundle.js"]
REDOC_FILES = ["/docs-assets/redoc.standalone.js"]
FAVICON = "/docs-assets/favicon.png"


class _References(HTMLParser):
    """Collects every `src` and `href` a page asks the browser to load, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


async def test_docs_pages_reference_only_files_tgrelay_serves(relay: Tgrelay) -> None:
    """/docs and /redoc name only same-origin paths (no scheme or host anywhere in the page), each of those files is served, and each page tells the browser to load nothing from elsewhere."""
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=10) as client:
        swagger = await client.get("/docs")
        redoc = await client.get("/redoc")
        files = {path: await client.get(path) for path in [*SWAGGER_FILES, *REDOC_FILES, FAVICON]}
    assert (swagger.status_code, redoc.status_code) == (200, 200)
    assert references(swagger.text) == [SWAGGER_FILES[0], FAVICON, SWAGGER_FILES[1]]
    assert references(redoc.text) == [FAVICON, *REDOC_FILES]
    assert ("://" in swagger.text, "://" in redoc.text) == (False, False)
    assert "url: '/openapi.json'" in swagger.text
    assert '<redoc spec-url="/openapi.json">' in redoc.text
    policy = (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'"
    )
    assert [page.headers["content-security-policy"] for page in (swagger, redoc)] == [policy] * 2
    assert {
        path: (answer.status_code, answer.headers["content-type"].split(";")[0])
        for path, answer in files.items()
    } == {
        "/docs-assets/swagger-ui.css": (200, "text/css"),
        "/docs-assets/swagger-ui-bundle.js": (200, "text/javascript"),
        "/docs-assets/redoc.standalone.js": (200, "text/javascript"),
        "/docs-assets/favicon.png": (200, "image/png"),
    }


async def offline(page: Page, origin: str) -> tuple[list[str], list[str]]:
    """Abort every request of the page that leaves `origin`; returns (paths served, URLs refused)."""
    served: list[str] = []
    refused: list[str] = []

    async def judge(route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" == origin:
            served.append(parts.path)
            await route.continue_()
        else:
            refused.append(url)
            await route.abort("internetdisconnected")

    await page.context.route("**/*", judge)
    return served, refused


@needs_chromium
async def test_swagger_ui_shows_the_operations_with_the_network_blocked(
    relay: Tgrelay, page: Page
) -> None:
    """In Chromium with every other origin blocked, /docs renders the operations (POST /v1/bots among them) from tgrelay's own files and tries no other host."""
    served, refused = await offline(page, relay.base_url)

    await page.goto(f"{relay.base_url}/docs")
    connect = page.locator("#operations-bots-connect_bot_v1_bots_post")
    await expect(connect).to_be_visible()
    await expect(connect.locator(".opblock-summary-method")).to_have_text("POST")
    await expect(connect.locator(".opblock-summary-path")).to_have_text("/v1/bots")
    await expect(connect.locator(".opblock-summary-description")).to_have_text(
        "Connect a bot by its token"
    )
    await expect(page.locator(".opblock-tag-section")).not_to_have_count(0)

    assert refused == []
    # The browser may or may not have asked for the favicon by now.
    assert sorted(set(served) - {FAVICON}) == sorted(["/docs", "/openapi.json", *SWAGGER_FILES])


@needs_chromium
async def test_redoc_shows_the_operations_with_the_network_blocked(
    relay: Tgrelay, page: Page
) -> None:
    """In Chromium with every other origin blocked, /redoc renders the operations (POST /v1/bots among them) from tgrelay's own files and tries no other host."""
    served, refused = await offline(page, relay.base_url)

    await page.goto(f"{relay.base_url}/redoc")
    # ReDoc names each operation's heading by its anchor, then its summary.
    heading = page.get_by_role(
        "heading", name="connect_bot_v1_bots_post Connect a bot by its token"
    )
    await expect(heading).to_be_visible()
    await expect(page.get_by_role("button", name="post /v1/bots", exact=True)).to_be_visible()

    assert refused == []
    assert sorted(set(served) - {FAVICON}) == sorted(["/redoc", "/openapi.json", *REDOC_FILES])
