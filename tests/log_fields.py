"""The fields the current context adds to every log line (what observability's logging
merges in: structlog's bound context variables and the current trace id)."""

from __future__ import annotations

from typing import Any

import structlog

from tgrelay import tracing


def log_fields() -> dict[str, Any]:
    event: dict[str, Any] = {}
    structlog.contextvars.merge_contextvars(None, "", event)
    tracing.add_trace_id(None, "", event)
    return event
