"""Benchmark a flood of forged webhook requests: database growth, and the genuine intake.

Starts the emulator and the default `tgrelay serve` (SQLite, worker in the process, webhook
mode), connects a bot, then runs two wrk processes side by side: a genuine one (the bot's
real secret, unique updates, a few connections, bench/intake.lua) and a forged one at full
speed (a wrong secret, bench/forged.lua; `--spread N` sends every other request to one of N
made-up bot ids). First the genuine one alone, then both together, each for `--duration`
seconds. Prints, for the flood: forged requests/s, the audit table's growth in bytes per
minute (SQLite's dbstat: the audit_log table and its indexes), its rows and their counted
requests, whether the bot's secret was rotated (more than TGRELAY_FORGED_ROTATE_THRESHOLD
forged requests a minute), and the genuine intake's rate and p99 alone and during the flood.
Not part of the test suite; needs Debian's `wrk`.

    .venv/bin/python bench/forged.py
    .venv/bin/python bench/forged.py --duration 10 --spread 5000
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from servers import create_workspace, free_port, process, serve_env, wait_http

HERE = Path(__file__).parent
RESULT = re.compile(r"RESULT (.*)")
AUDIT_BYTES = (
    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN "
    "(SELECT name FROM sqlite_schema WHERE tbl_name = 'audit_log')"
)
TALLY = "SELECT count(*), coalesce(sum(count), 0) FROM audit_log WHERE action = 'intake.rejected'"
# Rows are per minute (created_at is the minute's start), and a minute's rows are bounded.
BUSIEST_MINUTE = (
    "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM audit_log"
    " WHERE action = 'intake.rejected' GROUP BY created_at)"
)


def wrk(args: list[str], seconds: int, connections: int, threads: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(run: subprocess.Popen[str]) -> dict[str, int]:
    out, err = run.communicate()
    match = RESULT.search(out)
    if run.returncode != 0 or match is None:
        raise SystemExit(f"wrk printed no result:\n{out}\n{err}")
    return {key: int(value) for key, value in (p.split("=") for p in match.group(1).split())}


def audit_state(database: Path) -> tuple[int, int, int, int]:
    """(bytes of audit_log with its indexes, intake.rejected rows, requests they count, rows
    of the busiest minute)."""
    with sqlite3.connect(database) as conn:
        (size,) = conn.execute(AUDIT_BYTES).fetchone()
        rows, counted = conn.execute(TALLY).fetchone()
        (busiest,) = conn.execute(BUSIEST_MINUTE).fetchone()
    return int(size), int(rows), int(counted), int(busiest)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of each phase")
    parser.add_argument("--connections", type=int, default=40, help="the flood's connections")
    parser.add_argument("--genuine-connections", type=int, default=4)
    parser.add_argument("--spread", type=int, default=0, help="made-up bot ids in the flood")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    tgrelay = [sys.executable, "-m", "tgrelay"]
    emulator_port, app_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="tgrelay-forged-") as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        data_dir.mkdir()
        database = data_dir / "tgrelay.db"
        env = serve_env(data_dir, emulator_port=emulator_port, app_port=app_port)
        with process([*tgrelay, "emulator", "--port", str(emulator_port)], env, workdir / "e.log"):
            emulator = f"http://127.0.0.1:{emulator_port}/_emulator/bots"
            wait_http(f"{emulator}/1")
            api_key = create_workspace(tgrelay, env)
            bot = httpx.post(emulator, json={"username": "bench_bot"}).json()
            with process([*tgrelay, "serve"], env, workdir / "serve.log"):
                url = f"http://127.0.0.1:{app_port}"
                wait_http(f"{url}/healthz")
                httpx.post(
                    f"{url}/v1/bots",
                    json={"token": bot["token"]},
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=30,
                ).raise_for_status()
                secret = httpx.get(f"{emulator}/{bot['id']}").json()["webhook"]["secret_token"]

                def genuine(first_update_id: int) -> subprocess.Popen[str]:
                    script = ["-s", str(HERE / "intake.lua"), url, "--"]
                    path = f"/telegram/{bot['id']}"
                    return wrk(
                        [*script, path, secret, str(first_update_id)],
                        args.duration,
                        args.genuine_connections,
                        1,
                    )

                alone = result(genuine(0))
                before = audit_state(database)
                forged_run = wrk(
                    ["-s", str(HERE / "forged.lua"), url, "--", str(bot["id"]), str(args.spread)],
                    args.duration,
                    args.connections,
                    2,
                )
                during = result(genuine(10**12))
                forged = result(forged_run)
                time.sleep(3)  # the intake flushes its tally every 2 s: let the last land
                after = audit_state(database)
                hook = httpx.get(f"{emulator}/{bot['id']}").json()["webhook"]
                rotated = hook["secret_token"] != secret
    seconds = forged["duration_us"] / 1e6
    grown, rows = after[0] - before[0], after[1] - before[1]
    # Rows are bounded per minute, not per second: extrapolating the run's growth would
    # overstate a short run that straddles a minute's start. The busiest minute's rows at
    # the bytes each row took give the growth of a full minute of this flood.
    per_row = grown / rows if rows and grown else 0
    per_minute = after[3] * per_row if args.spread else grown / seconds * 60
    print(
        f"flood: {forged['requests']:,} forged requests in {seconds:.1f} s "
        f"({forged['requests'] / seconds:,.0f}/s, {forged['non2xx']:,} answered 401, "
        f"p99 {forged['p99_us'] / 1000:.1f} ms), spread over {args.spread} made-up bots"
    )
    print(
        f"audit_log: +{grown:,} bytes, +{rows} rows ({per_row:.0f} bytes each) counting "
        f"{after[2] - before[2]:,} rejected requests, busiest minute {after[3]} rows: "
        f"{per_minute / 1e6:.3f} MB per minute; bot secret rotated: {'yes' if rotated else 'no'}"
    )
    for name, run in (("alone", alone), ("during the flood", during)):
        rate = run["requests"] / (run["duration_us"] / 1e6)
        print(
            f"genuine intake {name}: {rate:,.0f} updates/s, p50 {run['p50_us'] / 1000:.2f} ms, "
            f"p99 {run['p99_us'] / 1000:.2f} ms ({run['non2xx']} non-2xx)"
        )


if __name__ == "__main__":
    main()
