"""The event catalog: complete, its examples valid, its filters exact, its docs current."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tgrelay.cli import app
from tgrelay.events import catalog
from tgrelay.events.catalog import EventType

DOCS = Path(__file__).parents[2] / "docs" / "events.md"
SPEC_IDS = [spec.type.value for spec in catalog.CATALOG]


def test_every_event_type_has_one_spec() -> None:
    """The catalog documents each EventType exactly once, in the enum's order."""
    assert [spec.type for spec in catalog.CATALOG] == list(EventType)


def test_no_type_is_reserved_now_the_support_desk_emits_its_own() -> None:
    """Every catalog type is emitted: the ticket.* types are no longer reserved."""
    assert [spec.type.value for spec in catalog.CATALOG if spec.reserved] == []


def test_a_stored_subscription_to_the_dropped_ticket_updated_is_harmless() -> None:
    """An endpoint that subscribed to ticket.updated (reserved, then dropped) keeps its row and
    simply receives nothing for it; a new subscription to it is refused as unknown."""
    assert (
        catalog.matches(("ticket.updated",), "ticket.status_changed"),
        catalog.matches(("ticket.updated", "ticket.*"), "ticket.resolved"),
        catalog.is_known_filter("ticket.updated"),
    ) == (False, True, False)


@pytest.mark.parametrize("spec", catalog.CATALOG, ids=SPEC_IDS)
def test_example_data_validates_against_its_model(spec: catalog.EventSpec) -> None:
    """Each example's data is accepted by its model and keeps every value it gave."""
    data = spec.data.model_validate(spec.example)
    dumped = data.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert dumped == spec.example


@pytest.mark.parametrize("spec", catalog.CATALOG, ids=SPEC_IDS)
def test_example_body_validates_as_an_envelope(spec: catalog.EventSpec) -> None:
    """Each example body is an Envelope of its own type, as an endpoint would parse it."""
    body = catalog.example_body(spec)
    envelope = catalog.Envelope.model_validate(body)
    assert (envelope.type, envelope.data) == (spec.type, spec.example)


@pytest.mark.parametrize("spec", catalog.CATALOG, ids=SPEC_IDS)
def test_example_body_meets_its_schema(spec: catalog.EventSpec) -> None:
    """The body has every required envelope and data field, and the schema pins its type."""
    schema = catalog.envelope_schema(spec.type)
    body = catalog.example_body(spec)
    data_schema = schema["properties"]["data"]
    assert (
        schema["title"],
        schema["properties"]["type"],
        missing(schema, body),
        missing(data_schema, body["data"]),
        sorted(set(body["data"]) - set(data_schema["properties"])),
        data_schema["additionalProperties"],
    ) == (spec.type.value, {"const": spec.type.value}, [], [], [], False)


@pytest.mark.parametrize("spec", catalog.CATALOG, ids=SPEC_IDS)
def test_schema_references_resolve_within_the_document(spec: catalog.EventSpec) -> None:
    """Every `$ref` of a type's schema points at a definition in the same document."""
    schema = catalog.envelope_schema(spec.type)
    unresolved = [ref for ref in references(schema) if not resolves(schema, ref)]
    assert unresolved == []


def missing(schema: dict[str, Any], value: dict[str, Any]) -> list[str]:
    return sorted(set(schema.get("required", ())) - set(value))


def references(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [ref for child in node.values() for ref in references(child)]
    if isinstance(node, list):
        return [ref for child in node for ref in references(child)]
    return []


def resolves(schema: dict[str, Any], ref: str) -> bool:
    """A local JSON pointer ("#/$defs/ChatRef") names a member of the document."""
    if not ref.startswith("#/"):
        return False
    node: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.mark.parametrize(
    ("subscribed", "event_type", "expected"),
    [
        (None, "message.received", True),  # no filter: every type
        (None, "ticket.created", True),
        (("message.received",), "message.received", True),
        (("message.received",), "message.edited", False),
        (("group.*",), "group.connected", True),
        (("group.*",), "group.status_changed", True),
        (("group.*",), "bot.connected", False),
        (("bot.connected", "group.*"), "bot.connected", True),
        (("bot.connected", "group.*"), "bot.disconnected", False),
        (("ticket.*",), "ticket.message_added", True),
        (("message.*",), "callback.received", False),
        (("group",), "group.connected", False),  # a bare family name is not a pattern
    ],
)
def test_matches(subscribed: tuple[str, ...] | None, event_type: str, expected: bool) -> None:
    """An endpoint gets a type it names, one of a family it names, or all with no filter."""
    assert catalog.matches(subscribed, event_type) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("message.received", True),
        ("endpoint.disabled", True),
        ("ticket.message_added", True),
        ("group.*", True),
        ("ticket.*", True),
        ("message.deleted", False),
        ("chat.*", True),  # chat.throttled
        ("user.*", False),
        ("group", False),
        ("*", False),
        (".*", False),
        ("", False),
        ("Message.Received", False),
    ],
)
def test_is_known_filter(pattern: str, expected: bool) -> None:
    """A subscription entry is a catalog type or the family of at least one."""
    assert catalog.is_known_filter(pattern) is expected


def test_markdown_catalog_is_the_committed_docs() -> None:
    """docs/events.md is exactly what `tgrelay events catalog --markdown` prints."""
    result = CliRunner().invoke(app, ["events", "catalog", "--markdown"])
    assert result.exit_code == 0, result.output
    assert DOCS.read_text() == result.stdout, (
        "docs/events.md is out of date; regenerate it with "
        "`python3 -m uv run tgrelay events catalog --markdown > docs/events.md`"
    )


def test_markdown_tables_take_descriptions_from_the_field_comments() -> None:
    """A field's row gives its JSON type, whether it is required and its source comment."""
    result = CliRunner().invoke(app, ["events", "catalog", "--markdown"])
    rows = [line for line in result.stdout.splitlines() if line.startswith("| `")]
    assert {
        "| `text` | string or null | no | the text, or a media message's caption |",
        "| `from` | [UserRef](#userref) or null | no |  |",
        "| `message_ids` | array of integer | yes | one per part sent |",
        "| `type` | string | yes | private \\| group \\| supergroup \\| channel |",
    } <= set(rows)


def test_json_catalog_lists_each_type_with_its_schema_and_example() -> None:
    """`--json` gives every type with its description, reserved flag, versions (each with
    its change and schema), schema and example."""
    result = CliRunner().invoke(app, ["events", "catalog", "--json"])
    listed = json.loads(result.stdout)
    assert (result.exit_code, listed) == (
        0,
        [
            {
                "type": spec.type.value,
                "description": spec.description,
                "reserved": spec.reserved,
                "version": spec.version,
                "versions": [
                    {
                        "version": version.number,
                        "change": version.change,
                        "schema": catalog.envelope_schema(spec.type, version.number),
                    }
                    for version in spec.versions
                ],
                "schema": catalog.envelope_schema(spec.type),
                "example": catalog.example_body(spec),
            }
            for spec in catalog.CATALOG
        ],
    )


def test_markdown_and_json_together_are_refused() -> None:
    """Asking for both formats is a usage error, not a guess."""
    result = CliRunner().invoke(app, ["events", "catalog", "--markdown", "--json"])
    assert (result.exit_code, result.stdout) == (2, "")


# --- versions ------------------------------------------------------------------------------


def test_the_versions_of_each_type() -> None:
    """message.*, callback.received are at version 2 (consumed_by); every other type at 1."""
    assert {spec.type.value: [v.number for v in spec.versions] for spec in catalog.CATALOG} == {
        spec.type.value: (
            [1, 2]
            if spec.type.value in {"message.received", "message.edited", "callback.received"}
            else [1]
        )
        for spec in catalog.CATALOG
    }


@pytest.mark.parametrize("spec", catalog.CATALOG, ids=SPEC_IDS)
def test_versions_are_numbered_and_each_newer_one_can_be_taken_down(
    spec: catalog.EventSpec,
) -> None:
    """Versions count 1, 2, …; every one but the first has a downgrade, the first none."""
    assert [(v.number, v.downgrade is None) for v in spec.versions] == [
        (number, number == 1) for number in range(1, len(spec.versions) + 1)
    ]


@pytest.mark.parametrize(
    ("event_type", "version", "data", "expected"),
    [
        (  # the field version 2 added is dropped, whatever its value
            "message.received",
            1,
            {"bot_id": 1, "text": "hi", "consumed_by": "groups"},
            {"bot_id": 1, "text": "hi"},
        ),
        ("message.edited", 1, {"text": "hi", "consumed_by": None}, {"text": "hi"}),
        ("callback.received", 1, {"data": "ack", "consumed_by": "support"}, {"data": "ack"}),
        (  # the latest version is the body as emitted
            "message.received",
            2,
            {"text": "hi", "consumed_by": "groups"},
            {"text": "hi", "consumed_by": "groups"},
        ),
        ("group.connected", 1, {"chat_id": -100}, {"chat_id": -100}),
    ],
)
def test_render_takes_data_down_to_the_pinned_version(
    event_type: str, version: int, data: dict[str, Any], expected: dict[str, Any]
) -> None:
    """An emitted body rendered at a version gets that version's number and data shape;
    the rest of the envelope is kept, in its order."""
    body = {"id": "evt_1", "type": event_type, "version": 2, "timestamp": "t", "data": data}
    rendered = catalog.render(body, version)
    assert (list(rendered), rendered["version"], rendered["data"]) == (
        ["id", "type", "version", "timestamp", "data"],
        version,
        expected,
    )
    assert body["data"] == data  # pure: the emitted body is left as it was


@pytest.mark.parametrize("spec", catalog.CATALOG, ids=SPEC_IDS)
def test_each_version_of_the_example_validates_against_its_model(
    spec: catalog.EventSpec,
) -> None:
    """The example rendered in each version is accepted by that version's model as it is,
    and meets that version's schema (its version a const)."""
    for version in spec.versions:
        body = catalog.example_body(spec, version.number)
        schema = catalog.envelope_schema(spec.type, version.number)
        data_schema = schema["properties"]["data"]
        validated = version.data.model_validate(body["data"])
        assert (
            validated.model_dump(mode="json", by_alias=True, exclude_unset=True),
            schema["properties"]["version"],
            body["version"],
            sorted(set(body["data"]) - set(data_schema["properties"])),
        ) == (body["data"], {"const": version.number}, version.number, [])


@pytest.mark.parametrize(
    ("event_type", "version", "problem"),
    [
        ("message.received", 1, None),
        ("message.received", 2, None),
        ("ticket.created", 1, None),
        ("message.received", 3, "message.received has no version 3 (its versions: 1, 2)"),
        ("bot.connected", 2, "bot.connected has no version 2 (its versions: 1)"),
        ("message.*", 1, "unknown event type 'message.*' (pin a type, not a family)"),
        ("message.deleted", 1, "unknown event type 'message.deleted' (pin a type, not a family)"),
    ],
)
def test_version_problem(event_type: str, version: int, problem: str | None) -> None:
    """Only a catalog type and one of its versions can be pinned; the reason says which."""
    assert catalog.version_problem(event_type, version) == problem
