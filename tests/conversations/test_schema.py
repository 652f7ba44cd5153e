"""The published flow schema: docs/flow.schema.json is current and describes the document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tgrelay.conversations import schema

ROOT = Path(__file__).parents[2]
PUBLISHED = ROOT / "docs" / "flow.schema.json"


def test_the_published_schema_is_current() -> None:
    """docs/flow.schema.json is what the models generate (regenerate it with
    `python -m tgrelay.conversations.schema > docs/flow.schema.json`)."""
    generated = subprocess.run(
        [sys.executable, "-m", "tgrelay.conversations.schema"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout

    assert PUBLISHED.read_text() == generated == schema.schema_text()


def test_the_schema_names_every_step_kind_and_input_type() -> None:
    """The schema's step and input unions are tagged by `kind` and `type` with the issue's
    names, and documents may hold no field the models do not know."""
    published = json.loads(PUBLISHED.read_text())
    definitions = published["$defs"]
    steps = published["properties"]["steps"]["items"]
    inputs = definitions["AskStep"]["properties"]["input"]

    assert published["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert published["required"] == ["name", "trigger", "steps"]
    assert (steps["discriminator"]["propertyName"], sorted(steps["discriminator"]["mapping"])) == (
        "kind",
        ["ask", "branch", "call", "confirm", "end", "handoff", "say"],
    )
    assert (
        inputs["discriminator"]["propertyName"],
        sorted(inputs["discriminator"]["mapping"]),
    ) == (
        "type",
        ["choice", "contact", "date", "email", "location", "number", "phone", "photo", "text"],
    )
    assert [
        name for name, body in definitions.items() if body.get("additionalProperties") is not False
    ] == []
