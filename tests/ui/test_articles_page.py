"""The knowledge base's pages over plain HTTP: articles written with the API's checks (a
refusal shown on the form, what was typed kept), searched with the API's ranked search, and
scoped to the signed-in workspace."""

from __future__ import annotations

from tests.e2e.harness import Tgrelay
from tgrelay.support import kb
from tgrelay.workspaces import service as workspaces

from .harness import browser, table_rows
from .test_support_pages import flash, timeless

REFUND = {
    "title": "Refunds",
    "body": "A refund reaches your card in 5 days.",
    "tags": "billing, refund",
    "language": "en",
    "auto_answer": "on",
}
ORDER = {
    "title": "Where is my order?",
    "body": "Track your order and its refund status with the link in your e-mail.",
    "tags": "",
    "language": "",
}


async def test_articles_page_creates_searches_edits_and_deletes_an_article(
    relay: Tgrelay,
) -> None:
    """A bad language is refused on the form with the text kept; saved articles are listed,
    searched best first, edited (a too-long tag refused first) and deleted."""
    async with browser(relay, relay.api_key) as client:
        refused = await client.post("/ui/articles", data={**REFUND, "language": "English"})
        created = await client.post("/ui/articles", data=REFUND, follow_redirects=True)
        article_path = str(created.url.path)
        await client.post("/ui/articles", data=ORDER)
        listed = await client.get("/ui/articles")
        searched = await client.get("/ui/articles", params={"q": "the refund?"})
        api_hits = await relay.api.get("/v1/support/articles/search", params={"q": "the refund?"})
        unmatched = await client.get("/ui/articles", params={"q": "norway"})
        bad_edit = await client.post(article_path, data={**REFUND, "tags": "x" * 65})
        edited = await client.post(
            article_path,
            data={"title": "Refunds", "body": "Five days.", "tags": " money ,, ", "language": ""},
            follow_redirects=True,
        )
        article_id = article_path.rsplit("/", 1)[1]
        saved = await kb.get_article(relay.runtime, relay.workspace_id, article_id)
        deleted = await client.post(f"{article_path}/delete", follow_redirects=True)

    assert refused.status_code == 422
    assert flash(refused.text) == [
        "Not saved: language is a primary language subtag, 2 or 3 of a-z (\"en\"); got 'English'"
    ]
    assert 'value="English"' in refused.text
    assert "A refund reaches your card in 5 days.</textarea>" in refused.text
    assert flash(created.text) == ["Article saved."]
    assert timeless(table_rows(listed.text)) == [
        [
            "Refunds",
            "A refund reaches your card in 5 days.",
            "billing, refund",
            "en",
            "yes",
            "<time>",
        ],
        ["Where is my order?", ORDER["body"], "", "any", "no", "<time>"],
    ]
    assert [[row[0], row[2]] for row in table_rows(searched.text)] == [
        [hit["article"]["title"], ", ".join(hit["article"]["tags"])] for hit in api_hits.json()
    ]
    assert [row[0] for row in table_rows(searched.text)] == ["Refunds", "Where is my order?"]
    assert 'value="the refund?"' in searched.text
    assert table_rows(unmatched.text) == [["No article matches."]]
    assert (bad_edit.status_code, flash(bad_edit.text)) == (
        422,
        ["Not saved: at most 20 tags of 1 to 64 characters"],
    )
    assert flash(edited.text) == ["Article saved."]
    assert (saved.title, saved.body, saved.tags, saved.language, saved.auto_answer) == (
        "Refunds",
        "Five days.",
        ("money",),
        None,
        False,
    )
    assert (str(deleted.url.path), flash(deleted.text)) == (
        "/ui/articles",
        ["Article Refunds deleted."],
    )
    assert [row[0] for row in table_rows(deleted.text)] == ["Where is my order?"]


async def test_another_workspaces_article_is_not_found(relay: Tgrelay) -> None:
    """Another workspace's article is a 404 page and is not changed or deleted by its forms."""
    async with browser(relay, relay.api_key) as client:
        created = await client.post("/ui/articles", data=REFUND)
    article_path = created.headers["location"].split("?")[0]
    _, other_key = await workspaces.create_workspace(
        relay.runtime.db, "Other", now=relay.runtime.clock()
    )
    async with browser(relay, other_key) as other:
        page = await other.get(article_path)
        writes = [
            await other.post(article_path, data={**REFUND, "title": "Mine"}),
            await other.post(f"{article_path}/delete"),
        ]
        listed = await other.get("/ui/articles", params={"q": "refund"})

    assert page.status_code == 404
    assert [w.status_code for w in writes] == [404, 404]
    assert table_rows(listed.text) == [["No article matches."]]
    assert [a.title for a in await kb.list_articles(relay.runtime, relay.workspace_id)] == [
        "Refunds"
    ]
