"""The updates worker leaves the intake its share during bursts, and only then."""

from __future__ import annotations

from dataclasses import dataclass

from tgrelay.app import INTAKE_BURST_RATE, yielding_to


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

    pause = yielding_to(intake, clock=clock, sleep=sleep)
    clock.seconds += 0.01
    intake.arrived += int(INTAKE_BURST_RATE * 0.01 * 2)  # twice the burst rate
    await pause(0.004)
    clock.seconds += 0.01
    intake.arrived += int(INTAKE_BURST_RATE * 0.01 / 3)  # a steady trickle
    await pause(0.004)
    clock.seconds += 0.01  # nothing arrived
    await pause(0.004)
    assert pauses == [0.004]
