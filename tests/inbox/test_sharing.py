"""The updates worker leaves the intake its share: pauses during bursts, and only then;
short transactions while updates arrive, long ones once the intake is quiet."""

from __future__ import annotations

from dataclasses import dataclass

from tgrelay.inbox import sharing
from tgrelay.inbox.sharing import IntakeShare


@dataclass
class Intake:
    arrived: int = 0


class Clock:
    def __init__(self) -> None:
        self.seconds = 100.0

    def __call__(self) -> float:
        return self.seconds


async def test_the_worker_pauses_as_long_as_its_transaction_took_only_during_a_burst() -> None:
    intake, clock, pauses = Intake(), Clock(), []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    share = IntakeShare(intake, clock=clock, sleep=sleep)
    clock.seconds += 0.01
    intake.arrived += int(sharing.BURST_RATE * 0.01 * 2)  # twice the burst rate
    await share.pause(0.004)
    clock.seconds += 0.01
    intake.arrived += int(sharing.BURST_RATE * 0.01 / 3)  # a steady trickle
    await share.pause(0.004)
    clock.seconds += 0.01  # nothing arrived
    await share.pause(0.004)
    assert pauses == [0.004]


def test_transactions_are_short_while_updates_arrive_and_long_once_the_intake_is_quiet() -> None:
    intake, clock = Intake(), Clock()
    share = IntakeShare(intake, clock=clock)
    busy, quiet = sharing.BUSY_TRANSACTION_SECONDS, sharing.QUIET_TRANSACTION_SECONDS
    assert busy < quiet
    seen = [share.transaction_seconds()]  # just started: not yet known to be quiet
    clock.seconds += sharing.QUIET_AFTER_SECONDS
    seen.append(share.transaction_seconds())  # nothing arrived for the whole quiet time
    intake.arrived += 1
    seen.append(share.transaction_seconds())  # one update: busy again at once
    clock.seconds += sharing.QUIET_AFTER_SECONDS / 2
    seen.append(share.transaction_seconds())  # not quiet for long enough yet
    clock.seconds += sharing.QUIET_AFTER_SECONDS / 2
    seen.append(share.transaction_seconds())
    assert seen == [busy, quiet, busy, busy, quiet]


async def test_a_worker_behind_takes_long_transactions_unless_updates_come_in_a_burst() -> None:
    intake, clock = Intake(), Clock()

    async def sleep(seconds: float) -> None:
        pass

    share = IntakeShare(intake, clock=clock, sleep=sleep)
    busy, long = sharing.BUSY_TRANSACTION_SECONDS, sharing.QUIET_TRANSACTION_SECONDS
    behind, caught_up = sharing.BEHIND_JOBS, sharing.BEHIND_JOBS - 1
    intake.arrived += 10  # a steady trickle: well below the burst rate
    clock.seconds += 0.01
    await share.pause(0.004)
    seen = [share.transaction_seconds(behind), share.transaction_seconds(caught_up)]
    intake.arrived += int(sharing.BURST_RATE * 0.01 * 2)  # a burst: the intake goes first
    clock.seconds += 0.01
    await share.pause(0.004)
    seen.append(share.transaction_seconds(behind))
    assert seen == [long, busy, busy]


async def test_one_batch_at_a_time_while_the_intake_bursts() -> None:
    """The worker may run `most` batches at once, but one while updates come in a burst;
    as many again once a pause finds the burst over."""
    intake, clock = Intake(), Clock()

    async def sleep(seconds: float) -> None:
        pass

    share = IntakeShare(intake, clock=clock, sleep=sleep)
    seen = [share.batches(4)]
    clock.seconds += 0.01
    intake.arrived += int(sharing.BURST_RATE * 0.01 * 2)  # twice the burst rate
    await share.pause(0.004)
    seen.append(share.batches(4))
    clock.seconds += 0.01
    intake.arrived += int(sharing.BURST_RATE * 0.01 / 3)  # a steady trickle
    await share.pause(0.004)
    seen.append(share.batches(4))
    assert seen == [4, 1, 4]
