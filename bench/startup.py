"""How long tgrelay takes to answer: quick CLI commands, `serve` and `worker` start-up.

Each figure is the median of --runs (5) runs of the venv's `tgrelay` console script, what a
user runs; wall-clock from spawning the process. Issue 15's targets, on the project's
2-core machine: each quick command ≤ 0.6 s; `serve` answers /healthz ≤ 3 s; `worker` is
ready ≤ 3 s. Not part of the test suite.

- quick commands: `--help`, `webhooks verify` (a real signed webhook), `events catalog`,
  `workspace list` (a database with one workspace), output to a pipe;
- `serve` (worker in the process, SQLite, an existing data directory): until /healthz
  answers 200, and until its main worker (the lane that talks to Telegram) logs
  `worker.started`;
- `worker`: until its first lane claims jobs (`worker.started`), and until the main lane
  (the one that needs aiogram) does.

    uv run python bench/startup.py
    uv run python bench/startup.py --runs 9
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from servers import create_workspace, free_port
from tgrelay.http import signing

TGRELAY = [str(Path(sys.executable).parent / "tgrelay")]
QUICK_TARGET_SECONDS = 0.6
START_TARGET_SECONDS = 3.0
# The main lane's kinds include process_update; the webhook lane's only deliver_event.
MAIN_LANE_MARK = "process_update"


def quick(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([*TGRELAY, *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def until(ready: Callable[[], bool], *, what: str, timeout: float = 120) -> float:
    """Seconds until `ready()` holds, polled every 10 ms."""
    started = time.perf_counter()
    while not ready():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.01)
    return time.perf_counter() - started


def healthz(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def logged(log: Path, *marks: str) -> Callable[[], bool]:
    def found() -> bool:
        return any(
            '"worker.started"' in line and all(mark in line for mark in marks)
            for line in log.read_text(errors="replace").splitlines()
        )

    return found


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([*TGRELAY, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve_once(env: dict[str, str], log: Path) -> tuple[float, float]:
    port = free_port()
    started = time.perf_counter()
    process = start(["serve", "--port", str(port)], env, log)
    try:
        until(lambda: healthz(port), what="serve answering /healthz")
        answered = time.perf_counter() - started
        until(logged(log, MAIN_LANE_MARK), what="serve's main worker starting")
        return answered, time.perf_counter() - started
    finally:
        stop(process)


def worker_once(env: dict[str, str], log: Path) -> tuple[float, float]:
    started = time.perf_counter()
    process = start(["worker"], env, log)
    try:
        until(logged(log), what="worker claiming jobs")
        claiming = time.perf_counter() - started
        until(logged(log, MAIN_LANE_MARK), what="worker's main lane starting")
        return claiming, time.perf_counter() - started
    finally:
        stop(process)


def signed_webhook(folder: Path) -> list[str]:
    """Arguments of `webhooks verify` for a webhook signed now."""
    secret = signing.generate_secret()
    body = '{"type": "message.received"}'
    headers = signing.headers([secret], msg_id="evt_bench", timestamp=datetime.now(UTC), body=body)
    (folder / "body.json").write_text(body)
    (folder / "headers.txt").write_text(
        "".join(f"{name}: {value}\n" for name, value in headers.items())
    )
    return [
        "webhooks",
        "verify",
        "--secret",
        secret,
        "--headers",
        f"@{folder / 'headers.txt'}",
        "--body",
        f"@{folder / 'body.json'}",
    ]


def report(name: str, samples: list[float], target: float | None) -> bool:
    """Print a figure's median and spread, against its target if it has one; whether met."""
    median = statistics.median(samples)
    met = target is None or median <= target
    verdict = "" if target is None else f"; target ≤ {target:g} s: {'met' if met else 'NOT met'}"
    print(f"{name:<50} {median:5.2f} s  (runs {min(samples):.2f}–{max(samples):.2f} s{verdict})")
    return met


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgrelay-startup-") as tmp:
        folder = Path(tmp)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", tmp),
            "TGRELAY_DATA_DIR": str(folder / "data"),
            "TGRELAY_LOG_LEVEL": "INFO",
            # Nothing here calls Telegram; no bot is connected.
            "TGRELAY_TELEGRAM_API_URL": "http://127.0.0.1:9",
        }
        create_workspace(TGRELAY, env)  # also creates and migrates the database
        commands = {
            "tgrelay --help": ["--help"],
            "tgrelay webhooks verify …": signed_webhook(folder),
            "tgrelay events catalog": ["events", "catalog"],
            "tgrelay workspace list": ["workspace", "list"],
        }
        met = []
        for name, args in commands.items():
            quick(args, env)  # warm the OS's file cache once
            met.append(
                report(name, [quick(args, env) for _ in range(options.runs)], QUICK_TARGET_SECONDS)
            )
        serving = [serve_once(env, folder / "serve.log") for _ in range(options.runs)]
        met.append(
            report("tgrelay serve: /healthz answers", [s[0] for s in serving], START_TARGET_SECONDS)
        )
        report(
            "tgrelay serve: main worker starts (aiogram in)",
            [s[1] for s in serving],
            START_TARGET_SECONDS,
        )
        working = [worker_once(env, folder / "worker.log") for _ in range(options.runs)]
        met.append(
            report("tgrelay worker: claims jobs", [w[0] for w in working], START_TARGET_SECONDS)
        )
        report(
            "tgrelay worker: main lane starts (aiogram in)",
            [w[1] for w in working],
            START_TARGET_SECONDS,
        )
    if not all(met):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
