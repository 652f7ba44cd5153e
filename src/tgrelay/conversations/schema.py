"""The flow document's published JSON Schema (docs/flow.schema.json), generated from the
models in flow.py; the API serves the same text at `GET /v1/flows/schema`.

Regenerate the file with `python -m tgrelay.conversations.schema > docs/flow.schema.json`
(tests/conversations/test_schema.py fails while it is stale). The schema says the shape;
`checks.parse` adds what it cannot (references, regexes, templates, loops).
"""

from __future__ import annotations

import json
from typing import Any

from tgrelay.conversations.flow import Flow


def flow_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a flow document."""
    schema = Flow.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


def schema_text() -> str:
    """The schema as docs/flow.schema.json holds it: indented, keys in a stable order."""
    return json.dumps(flow_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
