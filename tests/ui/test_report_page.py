"""The report page over plain HTTP: the window's figures in its tables, the page in the
navigation, and a wrong window refused on the page."""

from __future__ import annotations

from tests.e2e.harness import Tgrelay

from .harness import browser, table_rows
from .test_support_pages import flash


async def test_report_page_shows_the_figures_and_refuses_a_wrong_window(relay: Tgrelay) -> None:
    """With no tickets every figure reads zero or a dash; `from` after `to` is a 422 naming why."""
    async with browser(relay, relay.api_key) as client:
        shown = await client.get("/ui/report")
        refused = await client.get(
            "/ui/report", params={"from": "2026-01-06T00:00:00Z", "to": "2026-01-05T00:00:00Z"}
        )

    assert shown.status_code == 200
    assert '<a href="/ui/report" aria-current="page">Report</a>' in shown.text
    assert table_rows(shown.text) == [
        ["Tickets opened", "0"],
        ["Tickets resolved", "0"],
        ["First response p50 / p90", "– / –"],
        ["Resolution p50 / p90", "– / –"],
        ["Deflection rate", "– (0 deflected)"],
        ["first_response", "0", "0", "0", "–", "0"],
        ["next_response", "0", "0", "0", "–", "0"],
        ["resolution", "0", "0", "0", "–", "0"],
        ["No agent activity in this window."],
    ]
    assert (refused.status_code, flash(refused.text)) == (
        422,
        ["No report: from must be before to"],
    )
