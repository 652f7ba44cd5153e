"""support.gauges: live tickets, breaches and auto-answer outcomes per desk, read at scrape
time on SQLite and PostgreSQL, and published without stale label pairs."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.observability import Metrics
from tgrelay.support import gauges

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _ticket(number: int, desk_id: str, status: str) -> dict[str, object]:
    return {
        "id": f"tkt_{number}",
        "workspace_id": "ws_1",
        "number": number,
        "desk_id": desk_id,
        "bot_id": 1,
        "customer_chat_id": number,
        "customer_id": number,
        "customer": "{}",
        "subject": "help",
        "status": status,
        "topic_chat_id": -1,
        "created_at": NOW,
        "updated_at": NOW,
    }


async def test_read_groups_per_desk(database: Database) -> None:
    """Live statuses count per desk (resolved and closed do not); breaches per metric and
    auto-answers per outcome count through their tickets' desks."""
    async with database.transaction() as conn:
        await conn.execute(
            insert(tables.workspaces),
            [{"id": "ws_1", "name": "Acme", "created_at": NOW}],
        )
        await conn.execute(
            insert(tables.tickets),
            [
                _ticket(1, "dsk_a", "new"),
                _ticket(2, "dsk_a", "new"),
                _ticket(3, "dsk_a", "open"),
                _ticket(4, "dsk_a", "resolved"),
                _ticket(5, "dsk_a", "closed"),
                _ticket(6, "dsk_b", "pending"),
            ],
        )
        await conn.execute(
            insert(tables.ticket_sla_breaches),
            [
                {"ticket_id": ticket, "metric": metric, "due_at": NOW, "breached_at": NOW}
                | {"recorded_at": NOW}
                for ticket, metric in [
                    ("tkt_1", "first_response"),
                    ("tkt_3", "first_response"),
                    ("tkt_6", "resolution"),
                ]
            ],
        )
        await conn.execute(
            insert(tables.support_auto_answers),
            [
                {"ticket_id": ticket, "article_id": "art_1", "title": "Billing", "score": 1.0}
                | {"outcome": outcome, "asked_at": NOW}
                for ticket, outcome in [("tkt_4", "deflected"), ("tkt_1", "timed_out")]
            ],
        )
    async with database.engine.connect() as conn:
        found = await gauges.read(conn)

    assert found == gauges.Figures(
        live_tickets={("dsk_a", "new"): 2, ("dsk_a", "open"): 1, ("dsk_b", "pending"): 1},
        breaches={("dsk_a", "first_response"): 2, ("dsk_b", "resolution"): 1},
        auto_answers={("dsk_a", "deflected"): 1, ("dsk_a", "timed_out"): 1},
    )


def test_publish_sets_the_gauges_and_drops_pairs_no_longer_counted() -> None:
    """A desk whose live tickets all closed leaves the gauge instead of keeping its count."""
    metrics = Metrics()
    gauges.publish(
        metrics,
        gauges.Figures(
            live_tickets={("dsk_a", "new"): 2, ("dsk_b", "open"): 1},
            breaches={("dsk_a", "first_response"): 3},
            auto_answers={("dsk_a", "deflected"): 4},
        ),
    )
    gauges.publish(
        metrics,
        gauges.Figures(
            live_tickets={("dsk_a", "new"): 1},
            breaches={("dsk_a", "first_response"): 5},
            auto_answers={},
        ),
    )
    sample = metrics.registry.get_sample_value
    assert [
        sample("tgrelay_support_tickets", {"desk_id": "dsk_a", "status": "new"}),
        sample("tgrelay_support_tickets", {"desk_id": "dsk_b", "status": "open"}),
        sample("tgrelay_support_sla_breaches", {"desk_id": "dsk_a", "metric": "first_response"}),
        sample(
            "tgrelay_support_auto_answer_outcomes", {"desk_id": "dsk_a", "outcome": "deflected"}
        ),
    ] == [1.0, None, 5.0, None]
