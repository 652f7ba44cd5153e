"""`tgrelay demo` as a process: a temporary directory, the tour, `--keep`, signals, exit status."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from tgrelay.demo import runner
from tgrelay.demo.tour import Deadlines, Tour


async def run(
    out: TextIO, err: TextIO, *, keep: bool, deadlines: Deadlines, flows: bool = False
) -> int:
    """Run the tour (with `flows`, its conversations part too); with `keep`, stay up after
    it until interrupted. The exit status."""
    this = asyncio.current_task()
    assert this is not None
    loop = asyncio.get_running_loop()
    # SIGTERM or a closed terminal end the demo like Ctrl-C does: children stopped, data gone.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, this.cancel)
    try:
        with tempfile.TemporaryDirectory(prefix="tgrelay-demo-") as tmp:
            workdir = Path(tmp)
            async with contextlib.AsyncExitStack() as stack:
                tour = await Tour.open(workdir, stack, deadlines, flows=flows)
                outcome = await runner.run(tour.steps(), out)
                if outcome.failed is not None:
                    print(
                        f"demo failed at step {outcome.held + 1} ({outcome.failed}): "
                        f"{outcome.reason}",
                        file=err,
                        flush=True,
                    )
                    return outcome.exit_code
                print(f"demo: all {outcome.held} steps held", file=out, flush=True)
                if not keep:
                    return 0
                for line in tour.running_summary():
                    print(line, file=out, flush=True)
                try:
                    stopped = await tour.processes.exited()
                except asyncio.CancelledError:
                    return 0  # Ctrl-C or SIGTERM: the way out of --keep
                print(
                    f"{stopped.name} exited with status {stopped.process.returncode}:\n"
                    + stopped.tail(),
                    file=err,
                    flush=True,
                )
                return 1
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def main(*, keep: bool, step_timeout: float, flows: bool = False) -> int:
    """`tgrelay demo`'s exit status: 0 when every step held, 1 when one failed, 130 when
    interrupted before the end."""
    deadlines = Deadlines(step=step_timeout)
    try:
        return asyncio.run(run(sys.stdout, sys.stderr, keep=keep, deadlines=deadlines, flows=flows))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("demo interrupted: its processes are stopped, its data deleted", file=sys.stderr)
        return 130
