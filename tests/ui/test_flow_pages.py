"""The flows and conversations pages over plain HTTP: the editor shows a document's problems
beside it and saves versions, a flow is disabled from its page, conversations list and show
their history with sensitive values masked, and each page is scoped to its workspace."""

from __future__ import annotations

import copy
import html
import json
import re
from datetime import timedelta
from typing import Any

from tests.conversations.rows import write_conversation
from tests.e2e.harness import Tgrelay
from tgrelay.conversations import registry
from tgrelay.conversations.models import AbandonReason, Status
from tgrelay.workspaces import keys
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import KeyScope

from .harness import browser, table_rows
from .test_support_pages import flash, timeless

PROBLEMS = re.compile(r'<ul class="error-text" id="flow-problems".*?</ul>', re.S)
ITEM = re.compile(r"<li><code>(.*?)</code></li>")
EDITOR = re.compile(r'<textarea id="document"[^>]*>(.*?)</textarea>', re.S)

BILLING: dict[str, Any] = {
    "name": "billing",
    "trigger": {"type": "command", "command": "/billing"},
    "steps": [
        {
            "id": "card",
            "kind": "ask",
            "message": "Your card number?",
            "input": {"type": "text", "pattern": "[0-9]{16}"},
            "variable": "card",
            "sensitive": True,
        },
        {"id": "done", "kind": "end", "message": "Thanks {{ user.first_name }}!"},
    ],
}


def flow_problems(page: str) -> list[str]:
    """The problems listed beside the editor, unescaped."""
    found = PROBLEMS.search(page)
    return [] if found is None else [html.unescape(item) for item in ITEM.findall(found[0])]


def editor_text(page: str) -> str:
    found = EDITOR.search(page)
    assert found is not None, "the page has no flow editor"
    return html.unescape(found[1])


async def test_the_editor_lists_a_documents_problems_and_saves_versions(relay: Tgrelay) -> None:
    """A bad document is refused with each problem beside the editor (the text kept); a good
    one is version 1, the same again saves nothing, an edit is version 2; older versions
    read back; disabling shows on the page and the list."""
    bad = copy.deepcopy(BILLING)
    bad["steps"][0]["input"]["pattern"] = "[0-9"
    bad["steps"][0]["next"] = "nowhere"
    bad_text = json.dumps(bad)
    changed = copy.deepcopy(BILLING)
    changed["steps"][0]["message"] = "The card's 16 digits?"
    async with browser(relay, relay.api_key) as client:
        empty = await client.get("/ui/flows")
        refused = await client.post("/ui/flows", data={"document": bad_text})
        created = await client.post(
            "/ui/flows", data={"document": json.dumps(BILLING)}, follow_redirects=True
        )
        same = await client.post(
            "/ui/flows/billing", data={"document": json.dumps(BILLING)}, follow_redirects=True
        )
        not_json = await client.post("/ui/flows/billing", data={"document": "{oops"})
        edited = await client.post(
            "/ui/flows/billing", data={"document": json.dumps(changed)}, follow_redirects=True
        )
        old = await client.get("/ui/flows/billing/versions/1")
        listed = await client.get("/ui/flows")
        disabled = await client.post("/ui/flows/billing/disable", follow_redirects=True)
        after = await client.get("/ui/flows")

    assert table_rows(empty.text) == [["No flows yet."]]
    assert (refused.status_code, flash(refused.text)) == (
        422,
        ["Not saved: the flow has 3 problems."],
    )
    assert flow_problems(refused.text) == [
        'steps[0] (id "card").next: no step has the id "nowhere"',
        'steps[0] (id "card").input.pattern: not a valid regex: unterminated character set '
        "at position 0",
        "steps: no end or handoff step can be reached from the first step",
    ]
    assert editor_text(refused.text) == bad_text
    assert (str(created.url.path), flash(created.text)) == (
        "/ui/flows/billing",
        ["Version 1 saved."],
    )
    assert json.loads(editor_text(created.text)) == BILLING
    assert flash(same.text) == ["Nothing saved: the document is version 1's."]
    assert (not_json.status_code, flow_problems(not_json.text)) == (
        422,
        ["not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"],
    )
    assert editor_text(not_json.text) == "{oops"
    assert flash(edited.text) == ["Version 2 saved."]
    assert timeless(table_rows(edited.text)) == [
        ["2", "command /billing", "<time>", "enabled"],
        ["1", "command /billing", "<time>", "superseded"],
    ]
    assert (
        json.loads(html.unescape(old.text.split('<pre id="flow-document">')[1].split("</pre>")[0]))
        == BILLING
    )
    assert timeless(table_rows(listed.text)) == [
        ["billing", "2 of 2", "command /billing", "enabled", "0", "<time>"]
    ]
    assert flash(disabled.text) == [
        "Flow disabled: it starts no new conversations; running ones go on."
    ]
    assert 'id="disable-flow"' not in disabled.text
    assert timeless(table_rows(after.text)) == [
        ["billing", "2 of 2", "command /billing", "disabled", "0", "<time>"]
    ]


async def test_a_trigger_conflict_is_shown_on_the_form(relay: Tgrelay) -> None:
    """A second flow on a command an enabled flow already has is refused with the other
    flow's name, the text kept."""
    rival = json.dumps({**BILLING, "name": "payments"})
    async with browser(relay, relay.api_key) as client:
        await client.post("/ui/flows", data={"document": json.dumps(BILLING)})
        refused = await client.post("/ui/flows", data={"document": rival})

    assert (refused.status_code, flash(refused.text)) == (
        409,
        [
            "Not saved: flow billing (version 1) already starts on the command /billing; "
            "disable it or choose another trigger"
        ],
    )
    assert editor_text(refused.text) == rival


async def test_conversations_list_filter_and_show_their_history(relay: Tgrelay) -> None:
    """Conversations list newest first and filter by status; one shows its facts, its
    variables (the sensitive one masked) and every transition."""
    principal = await workspaces.authenticate(relay.runtime.db, relay.api_key)
    await registry.post_flow(relay.runtime, principal, json.dumps(BILLING))
    start = relay.runtime.clock() - timedelta(minutes=10)
    await write_conversation(
        relay.runtime.db,
        relay.workspace_id,
        "cnv_done",
        started_at=start,
        step="done",
        status=Status.COMPLETED,
        variables={"card": "4111111111111111"},
        moves=[(None, "card", "/billing"), ("card", "done", "***"), ("done", None, "")],
    )
    await write_conversation(
        relay.runtime.db,
        relay.workspace_id,
        "cnv_gone",
        started_at=start + timedelta(minutes=1),
        user_id=7002,
        status=Status.ABANDONED,
        reason=AbandonReason.TIMEOUT,
    )
    await write_conversation(
        relay.runtime.db,
        relay.workspace_id,
        "cnv_live",
        started_at=start + timedelta(minutes=2),
        user_id=7003,
    )
    async with browser(relay, relay.api_key) as client:
        listed = await client.get("/ui/conversations")
        completed = await client.get("/ui/conversations", params={"status": "completed"})
        unknown = await client.get("/ui/conversations", params={"status": "lost"})
        shown = await client.get("/ui/conversations/cnv_done")
        flows = await client.get("/ui/flows")

    assert timeless(table_rows(listed.text)) == [
        ["<time>", "billing v1", "Ann @ann 7003", "active", "card", "<time>"],
        ["<time>", "billing v1", "Ann @ann 7002", "abandoned timeout", "card", "<time>"],
        ["<time>", "billing v1", "Ann @ann 7001", "completed", "done", "<time>"],
    ]
    assert [row[2] for row in table_rows(completed.text)] == ["Ann @ann 7001"]
    assert (unknown.status_code, flash(unknown.text)) == (
        422,
        ["Not filtered: unknown status 'lost': one of active, calling, completed, abandoned"],
    )
    assert timeless(table_rows(shown.text)) == [
        ["card", "*** (sensitive: masked)"],
        ["<time>", "start", "card", "/billing"],
        ["<time>", "card", "done", "***"],
        ["<time>", "done", "end", "—"],
    ]
    assert "4111111111111111" not in shown.text
    assert timeless(table_rows(flows.text))[0][4] == "1"  # one conversation not ended


async def test_another_workspace_and_a_read_key(relay: Tgrelay) -> None:
    """Another workspace finds neither the flow, its versions nor its conversations and
    cannot disable it; a read key sees the flow but its save is refused."""
    principal = await workspaces.authenticate(relay.runtime.db, relay.api_key)
    await registry.post_flow(relay.runtime, principal, json.dumps(BILLING))
    await write_conversation(
        relay.runtime.db, relay.workspace_id, "cnv_1", started_at=relay.runtime.clock()
    )
    _, other_key = await workspaces.create_workspace(
        relay.runtime.db, "Other", now=relay.runtime.clock()
    )
    _, read_key = await keys.create(
        relay.runtime.db, principal, name="reader", scope=KeyScope.READ, now=relay.runtime.clock()
    )
    async with browser(relay, other_key) as other:
        pages = [
            await other.get(path)
            for path in (
                "/ui/flows/billing",
                "/ui/flows/billing/versions/1",
                "/ui/conversations/cnv_1",
            )
        ]
        disable = await other.post("/ui/flows/billing/disable")
        conversations = await other.get("/ui/conversations")
    async with browser(relay, read_key) as reader:
        seen = await reader.get("/ui/flows/billing")
        save = await reader.post("/ui/flows/billing", data={"document": json.dumps(BILLING)})

    assert [p.status_code for p in pages] == [404, 404, 404]
    assert disable.status_code == 404
    assert "No conversations." in conversations.text
    assert seen.status_code == 200
    assert save.status_code == 403
    found = await registry.get_flow(relay.runtime, relay.workspace_id, "billing")
    assert [(v.version, v.enabled) for v in found.versions] == [(1, True)]


async def test_the_new_flow_editor_starts_with_a_flow_that_saves(relay: Tgrelay) -> None:
    """The starter document in the empty editor is a valid flow: saving it as is stores
    version 1 of "hello"."""
    async with browser(relay, relay.api_key) as client:
        empty = await client.get("/ui/flows")
        saved = await client.post(
            "/ui/flows", data={"document": editor_text(empty.text)}, follow_redirects=True
        )

    assert (str(saved.url.path), flash(saved.text)) == ("/ui/flows/hello", ["Version 1 saved."])
