"""support.report: the report's figures from rows — percentiles, SLA attainment, deflection
and per-agent figures — as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.support import report
from tgrelay.support.models import AutoAnswerOutcome
from tgrelay.support.report import (
    AgentFigures,
    Assigned,
    Attainment,
    Deflection,
    Durations,
    Facts,
    Opened,
    Resolved,
)
from tgrelay.support.sla import Clock, Metric

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(metric: Metric, *, met: float | None = None, breached: float | None = None) -> Clock:
    return Clock(
        metric=metric,
        started_at=T0,
        due_at=at(100),
        paused=False,
        met_at=None if met is None else at(met),
        breached_at=None if breached is None else at(breached),
    )


@pytest.mark.parametrize(
    ("values", "p50", "p90"),
    [
        ([], None, None),
        ([7.0], 7.0, 7.0),
        ([4.0, 1.0, 3.0, 2.0], 2.0, 4.0),
        ([float(v) for v in range(1, 11)], 5.0, 9.0),
        ([float(v) for v in range(1, 12)], 6.0, 10.0),
    ],
)
def test_nearest_rank_percentiles(
    values: list[float], p50: float | None, p90: float | None
) -> None:
    """p50 and p90 are the nearest-rank values, None for no values."""
    assert report.durations(values) == Durations(count=len(values), p50=p50, p90=p90)


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], {}),
        (
            [
                run(Metric.FIRST_RESPONSE, met=50),
                run(Metric.FIRST_RESPONSE, met=150, breached=100),
                run(Metric.FIRST_RESPONSE, breached=100),
                run(Metric.FIRST_RESPONSE),
            ],
            {Metric.FIRST_RESPONSE: Attainment(met=1, breached=2, open=1, rate=1 / 3)},
        ),
        (
            [run(Metric.RESOLUTION, met=10), run(Metric.NEXT_RESPONSE)],
            {
                Metric.RESOLUTION: Attainment(met=1, breached=0, open=0, rate=1.0),
                Metric.NEXT_RESPONSE: Attainment(met=0, breached=0, open=1, rate=None),
            },
        ),
    ],
)
def test_attainment_counts_each_run_once(
    runs: list[Clock], expected: dict[Metric, Attainment]
) -> None:
    """A breached run counts as breached even if met later; an unended one is open."""
    empty = Attainment(met=0, breached=0, open=0, rate=None)
    assert report.attainment(runs) == {m: expected.get(m, empty) for m in Metric}


def opened(
    ticket_id: str,
    first: float | None = None,
    by: int | None = None,
    answer: AutoAnswerOutcome | None = None,
) -> Opened:
    return Opened(
        ticket_id=ticket_id,
        created_at=T0,
        first_response_at=None if first is None else at(first),
        first_responder=by,
        auto_answer=answer,
    )


@pytest.mark.parametrize(
    ("tickets", "deflected", "rate", "outcomes"),
    [
        ([], 0, None, {}),
        ([opened("a"), opened("b")], 0, 0.0, {}),
        (
            [
                opened("a", answer=AutoAnswerOutcome.DEFLECTED),
                opened("b", answer=AutoAnswerOutcome.DECLINED),
                opened("c", answer=AutoAnswerOutcome.DEFLECTED),
                opened("d"),
            ],
            2,
            0.5,
            {AutoAnswerOutcome.DEFLECTED: 2, AutoAnswerOutcome.DECLINED: 1},
        ),
    ],
)
def test_deflection_rate_is_over_tickets_opened(
    tickets: list[Opened], deflected: int, rate: float | None, outcomes: dict[str, int]
) -> None:
    """The rate is deflected tickets over all opened; every outcome is listed, zeros too."""
    assert report.deflection(tickets) == Deflection(
        auto_answers={o: outcomes.get(o, 0) for o in AutoAnswerOutcome},
        deflected=deflected,
        rate=rate,
    )


def test_whole_report() -> None:
    """Opened, resolved, both durations, breaches and each agent's row from one set of facts."""
    facts = Facts(
        opened=[
            Opened(
                ticket_id="t1",
                created_at=T0,
                first_response_at=at(60),
                first_responder=7,
                runs=(run(Metric.FIRST_RESPONSE, met=60),),
            ),
            Opened(
                ticket_id="t2",
                created_at=T0,
                first_response_at=at(300),
                first_responder=7,
                runs=(run(Metric.FIRST_RESPONSE, breached=100),),
            ),
            Opened(ticket_id="t3", created_at=T0, first_response_at=at(30), first_responder=None),
            opened("t4", answer=AutoAnswerOutcome.DEFLECTED),
        ],
        resolved=[
            Resolved(ticket_id="t1", created_at=T0, at=at(3600), agent_id=7),
            Resolved(ticket_id="t4", created_at=T0, at=at(120), agent_id=None),
            Resolved(ticket_id="old", created_at=at(-7200), at=at(600), agent_id=8),
        ],
        assigned=[
            Assigned(ticket_id="t1", agent_id=7, at=at(1)),
            Assigned(ticket_id="t2", agent_id=9, at=at(2)),
            Assigned(ticket_id="t2", agent_id=7, at=at(3)),
        ],
        breaches=[Metric.FIRST_RESPONSE, Metric.RESOLUTION, Metric.FIRST_RESPONSE],
        agent_names={7: "Ann", 8: "Ben"},
    )

    result = report.report(facts)

    assert result == report.Report(
        opened=4,
        resolved=3,
        first_response=Durations(count=3, p50=60.0, p90=300.0),
        resolution=Durations(count=3, p50=3600.0, p90=7800.0),
        sla={
            Metric.FIRST_RESPONSE: Attainment(met=1, breached=1, open=0, rate=0.5),
            Metric.NEXT_RESPONSE: Attainment(met=0, breached=0, open=0, rate=None),
            Metric.RESOLUTION: Attainment(met=0, breached=0, open=0, rate=None),
        },
        breaches={Metric.FIRST_RESPONSE: 2, Metric.NEXT_RESPONSE: 0, Metric.RESOLUTION: 1},
        deflection=Deflection(
            auto_answers={
                AutoAnswerOutcome.WAITING: 0,
                AutoAnswerOutcome.DEFLECTED: 1,
                AutoAnswerOutcome.DECLINED: 0,
                AutoAnswerOutcome.TIMED_OUT: 0,
            },
            deflected=1,
            rate=0.25,
        ),
        agents=[
            AgentFigures(
                agent_id=7,
                name="Ann",
                assigned=2,
                first_responses=2,
                resolved=1,
                first_response_p50=60.0,
            ),
            AgentFigures(
                agent_id=8,
                name="Ben",
                assigned=0,
                first_responses=0,
                resolved=1,
                first_response_p50=None,
            ),
            AgentFigures(
                agent_id=9,
                name=None,
                assigned=1,
                first_responses=0,
                resolved=0,
                first_response_p50=None,
            ),
        ],
    )
