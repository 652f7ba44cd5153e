"""End to end: an update's trace id follows it from the webhook to the endpoint (as W3C
`traceparent`) and to Telegram, its spans reach an OTLP collector, and /metrics tells the
delivery, processing-lag and queue figures an operator alerts on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.otlp_collector import collecting
from tgrelay import tracing
from tgrelay.db import tables
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.receiver import receiving

from .harness import eventually, free_port, running_tgrelay, settings_for

ANN: dict[str, Any] = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
TEAM_CHAT: dict[str, Any] = {"id": -100777, "type": "supergroup", "title": "Team"}
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_an_update_is_traced_to_its_delivery_and_its_telegram_send(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """One trace id from the stored update through its jobs and event to the delivery's
    traceparent; spans for each step in it; a reply's Bot API call in its own update's trace."""
    port = free_port()
    with collecting() as collector:
        settings = settings_for(
            emulator,
            tmp_path,
            webhook=True,
            port=port,
            webhooks_allow_private=True,
            otel_endpoint=collector.url,
        )
        async with running_tgrelay(settings, port) as relay, receiving() as receiver:
            created = await relay.api.post(
                "/v1/endpoints",
                json={"url": receiver.url, "event_types": ["message.received"]},
            )
            assert created.status_code == 201, created.text
            bot = emulator.emulator.create_bot("traced_bot")
            await relay.connect_bot(bot.token)
            emulator.emulator.send_message(bot.id, ANN, TEAM_CHAT, "where is my order")
            [group_delivery] = await receiver.receiver.wait_for(1)
            # A bare /start in private: announced too, and answered through the Bot API.
            emulator.emulator.send_message(bot.id, ANN, None, "/start")
            [_, private_delivery] = await receiver.receiver.wait_for(2)

            async def replied() -> bool:
                return len(emulator.emulator.sent_messages(ANN["id"], bot_id=bot.id)) == 1

            await eventually(replied)
            rt = relay.runtime
            async with rt.db.engine.connect() as conn:
                updates = {
                    "private" if row.chat_id == ANN["id"] else "group": row.trace_id
                    for row in await conn.execute(
                        select(tables.updates.c.chat_id, tables.updates.c.trace_id).where(
                            tables.updates.c.bot_id == bot.id
                        )
                    )
                }
                jobs = sorted(
                    (row.kind, row.trace_id)
                    for row in await conn.execute(
                        select(tables.jobs.c.kind, tables.jobs.c.trace_id)
                    )
                )
                events = sorted(
                    (row.type, row.trace_id or "")
                    for row in await conn.execute(
                        select(tables.events.c.type, tables.events.c.trace_id)
                    )
                )

            async def delivered() -> bool:
                listed = await relay.api.get(
                    f"/v1/endpoints/{created.json()['id']}/deliveries",
                    params={"status": "delivered"},
                )
                return len(listed.json()["deliveries"]) == 2

            await eventually(delivered)
            async with httpx.AsyncClient(base_url=relay.base_url) as client:
                metrics = _samples((await client.get("/metrics")).text)
        # The relay has stopped: its tracer flushed every span to the collector.

    trace, private_trace = updates["group"], updates["private"]
    group_header = TRACEPARENT.fullmatch(group_delivery.headers["traceparent"])
    private_header = TRACEPARENT.fullmatch(private_delivery.headers["traceparent"])
    assert group_header is not None
    assert private_header is not None
    assert (group_header[1], private_header[1]) == (trace, private_trace)
    assert trace != private_trace
    # bot.connected came from an API call: no update caused it, so it has no trace.
    assert events == sorted(
        [("bot.connected", ""), ("message.received", trace), ("message.received", private_trace)]
    )
    assert jobs == sorted(
        [
            ("process_update", trace),
            ("deliver_event", trace),
            ("process_update", private_trace),
            ("deliver_event", private_trace),
            (outbox.SEND, private_trace),  # the reply, enqueued while its update ran
        ]
    )

    def spans_of(trace_id: str) -> list[tuple[str, str, str]]:
        return sorted(
            (s.name, s.span_id if s.name == "delivery.attempt" else "", s.parent_span_id)
            for s in collector.spans
            if s.trace_id == trace_id
        )

    root = tracing.root_span_id(trace)
    assert spans_of(trace) == [
        ("delivery.attempt", group_header[2], root),
        ("event.emitted", "", root),
        ("update.processed", "", root),
        ("update.stored", "", ""),
    ]
    assert [s.span_id for s in collector.named("update.stored") if s.trace_id == trace] == [root]
    private_root = tracing.root_span_id(private_trace)
    assert spans_of(private_trace) == [
        ("delivery.attempt", private_header[2], private_root),
        ("event.emitted", "", private_root),
        ("telegram.send", "", private_root),
        ("update.processed", "", private_root),
        ("update.stored", "", ""),
    ]
    assert [
        (s.trace_id, s.attributes["telegram.method"]) for s in collector.named("telegram.send")
    ] == [(private_trace, "sendMessage")]

    assert metrics[("tgrelay_delivery_attempts_total", (("outcome", "delivered"),))] == 2.0
    assert metrics[("tgrelay_delivery_latency_seconds_count", ())] == 2.0
    assert metrics[("tgrelay_delivery_breakers_open", ())] == 0.0
    assert metrics[("tgrelay_delivery_dead_letters_total", ())] == 0.0
    assert metrics[("tgrelay_processing_lag_seconds_count", ())] == 2.0
