"""The support report's figures as a pure function of rows: tickets opened and resolved in a
window, response and resolution times, SLA attainment, breaches, deflection and per agent.

Times are wall-clock seconds (not business time): they say how long customers waited,
whatever the desk's hours; SLA attainment is where business time counts. Percentiles are
nearest-rank: p50 and p90 are values that were actually measured.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from tgrelay.support.models import AutoAnswerOutcome
from tgrelay.support.sla import Clock, Metric


@dataclass(frozen=True, kw_only=True)
class Opened:
    """A ticket opened in the window, with what the report reads of it."""

    ticket_id: str
    created_at: datetime
    first_response_at: datetime | None
    first_responder: int | None  # the agent whose message answered first (None: the API)
    runs: tuple[Clock, ...] = ()  # its SLA runs as of now; none when its desk has no policy
    auto_answer: AutoAnswerOutcome | None = None


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """A move to `resolved` in the window (a reopened ticket resolved again counts again)."""

    ticket_id: str
    created_at: datetime  # the ticket's
    at: datetime
    agent_id: int | None  # None: the customer, the API or the system resolved it


@dataclass(frozen=True, kw_only=True)
class Assigned:
    ticket_id: str
    agent_id: int
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Facts:
    opened: Sequence[Opened]
    resolved: Sequence[Resolved]
    assigned: Sequence[Assigned]
    breaches: Sequence[Metric]  # each breach recorded with breached_at in the window
    agent_names: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Durations:
    count: int
    p50: float | None  # seconds; None when nothing was measured
    p90: float | None


@dataclass(frozen=True, kw_only=True)
class Attainment:
    met: int
    breached: int
    open: int  # neither met nor breached: running, paused, or stopped unanswered
    rate: float | None  # met / (met + breached); None before any run ended


@dataclass(frozen=True, kw_only=True)
class Deflection:
    auto_answers: Mapping[AutoAnswerOutcome, int]  # every outcome, zero included
    deflected: int
    rate: float | None  # deflected / tickets opened; None when none opened


@dataclass(frozen=True, kw_only=True)
class AgentFigures:
    agent_id: int
    name: str | None
    assigned: int
    first_responses: int
    resolved: int
    first_response_p50: float | None


@dataclass(frozen=True, kw_only=True)
class Report:
    opened: int
    resolved: int
    first_response: Durations
    resolution: Durations
    sla: Mapping[Metric, Attainment]  # every metric, zero counts included
    breaches: Mapping[Metric, int]
    deflection: Deflection
    agents: Sequence[AgentFigures]  # by agent id


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least `fraction` of all at or
    below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


def durations(values: Sequence[float]) -> Durations:
    return Durations(count=len(values), p50=percentile(values, 0.5), p90=percentile(values, 0.9))


def attainment(runs: Sequence[Clock]) -> dict[Metric, Attainment]:
    """Each metric's runs counted as breached (whatever came after), met, or open."""
    counts = {metric: Counter[str]() for metric in Metric}
    for run in runs:
        state = (
            "breached"
            if run.breached_at is not None
            else "met"
            if run.met_at is not None
            else "open"
        )
        counts[run.metric][state] += 1
    return {
        metric: Attainment(
            met=count["met"],
            breached=count["breached"],
            open=count["open"],
            rate=_ratio(count["met"], count["met"] + count["breached"]),
        )
        for metric, count in counts.items()
    }


def deflection(opened: Sequence[Opened]) -> Deflection:
    outcomes = Counter(t.auto_answer for t in opened if t.auto_answer is not None)
    deflected = outcomes[AutoAnswerOutcome.DEFLECTED]
    return Deflection(
        auto_answers={outcome: outcomes[outcome] for outcome in AutoAnswerOutcome},
        deflected=deflected,
        rate=_ratio(deflected, len(opened)),
    )


def agents(facts: Facts) -> list[AgentFigures]:
    """One row per agent who was assigned, answered first or resolved anything."""
    assigned = Counter(a.agent_id for a in facts.assigned)
    resolved = Counter(r.agent_id for r in facts.resolved if r.agent_id is not None)
    first: dict[int, list[float]] = {}
    for ticket in facts.opened:
        if ticket.first_responder is not None and ticket.first_response_at is not None:
            first.setdefault(ticket.first_responder, []).append(_seconds(ticket))
    ids = sorted(set(assigned) | set(resolved) | set(first))
    return [
        AgentFigures(
            agent_id=agent_id,
            name=facts.agent_names.get(agent_id),
            assigned=assigned[agent_id],
            first_responses=len(first.get(agent_id, [])),
            resolved=resolved[agent_id],
            first_response_p50=percentile(first.get(agent_id, []), 0.5),
        )
        for agent_id in ids
    ]


def report(facts: Facts) -> Report:
    """Every figure of the report from the window's facts."""
    answered = [_seconds(t) for t in facts.opened if t.first_response_at is not None]
    breaches = Counter(facts.breaches)
    return Report(
        opened=len(facts.opened),
        resolved=len(facts.resolved),
        first_response=durations(answered),
        resolution=durations([(r.at - r.created_at).total_seconds() for r in facts.resolved]),
        sla=attainment([run for ticket in facts.opened for run in ticket.runs]),
        breaches={metric: breaches[metric] for metric in Metric},
        deflection=deflection(facts.opened),
        agents=agents(facts),
    )


def _seconds(ticket: Opened) -> float:
    assert ticket.first_response_at is not None
    return (ticket.first_response_at - ticket.created_at).total_seconds()


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
