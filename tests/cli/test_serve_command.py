"""`tgrelay serve` as a user starts it: a port clash ends it at once, a start prints the banner."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tgrelay import tracing

TGRELAY = str(Path(sys.executable).parent / "tgrelay")


def environment(tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "TGRELAY_DATA_DIR": str(tmp_path / "data"),
        "TGRELAY_PORT": str(port),
        # Nothing may call the real Telegram; no bot is connected here anyway.
        "TGRELAY_TELEGRAM_API_URL": "http://127.0.0.1:9",
    }


def test_a_port_in_use_ends_serve_with_one_line_and_exit_code_2(tmp_path: Path) -> None:
    """The clash is reported before anything starts: the port, how to choose another, code 2."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [TGRELAY, "serve"],
            env=environment(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"error: port {port} on 127.0.0.1 is already in use; "
        "choose another with --port or TGRELAY_PORT\n",
    )
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_serve_prints_its_banner_once_when_it_answers(tmp_path: Path) -> None:
    """A first start announces the new data directory, then the banner, once, with its URLs."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [TGRELAY, "serve"],
        env=environment(tmp_path, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer /healthz in 120 s"
                time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    human = [line for line in stderr.splitlines() if not line.startswith("{")]
    data_dir = (tmp_path / "data").resolve()
    assert human == [
        f"tgrelay: creating a new, empty data directory at {data_dir} "
        "(none exists there yet; TGRELAY_DATA_DIR chooses another)",
        "tgrelay is running",
        f"  web UI     http://127.0.0.1:{port}/ui/",
        f"  API docs   http://127.0.0.1:{port}/docs",
        f"  data dir   {data_dir}",
        f"  database   SQLite, {data_dir / 'tgrelay.db'}",
        "  Telegram   long polling (set TGRELAY_PUBLIC_URL to receive webhooks)",
        "  worker     in this process",
        '  next       no workspace yet: tgrelay workspace create "My team"',
    ]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_process_hides_what_its_start_up_made_from_the_collector(
    tmp_path: Path, command: str
) -> None:
    """Once aiogram (imported in a thread after the start) is in, `serve` and `worker` freeze
    what start-up made, so full collections stop walking it, and log that they did."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with _running([command], environment(tmp_path, port), tmp_path / "stderr") as logged:
        (frozen,) = _eventually_logged(logged, "process.start_up_frozen")
    # aiogram's modules and the app's objects: far more than a bare interpreter's.
    assert frozen["frozen_objects"] > 100_000, frozen


@pytest.mark.slow
def test_the_webhooks_lane_child_hides_its_start_up_from_the_collector_too(
    tmp_path: Path,
) -> None:
    """With an endpoint, `serve` starts its webhooks lane child, which freezes what its own
    start-up made and logs it (into serve's stderr) before it takes work."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    env = environment(tmp_path, port) | {"TGRELAY_WEBHOOKS_ALLOW_PRIVATE": "true"}
    created = subprocess.run(
        [TGRELAY, "workspace", "create", "lane", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    api_key = json.loads(created.stdout)["api_key"]
    with _running(["serve"], env, tmp_path / "stderr") as logged:
        _eventually_logged(logged, "process.start_up_frozen")  # serve's own
        httpx.post(
            f"http://127.0.0.1:{port}/v1/endpoints",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["message.received"]},
        ).raise_for_status()
        (lane,) = _eventually_logged(logged, "lane.started")
        frozen = [e for e in logged("process.start_up_frozen") if e["pid"] == lane["pid"]]
    assert len(frozen) == 1, logged("process.start_up_frozen")
    assert frozen[0]["frozen_objects"] > 100_000, frozen


Logged = Callable[[str], list[dict[str, Any]]]


@contextmanager
def _running(args: list[str], env: dict[str, str], stderr: Path) -> Iterator[Logged]:
    """`tgrelay *args` with its stderr in a file; yields what it logged, by event, so far."""
    with stderr.open("w") as sink:
        process = subprocess.Popen(
            [TGRELAY, *args], env=env, stdout=subprocess.DEVNULL, stderr=sink
        )

    def logged(event: str) -> list[dict[str, Any]]:
        assert process.poll() is None, stderr.read_text()
        lines = [line for line in stderr.read_text().splitlines() if line.startswith("{")]
        return [entry for line in lines if (entry := json.loads(line))["event"] == event]

    try:
        yield logged
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _eventually_logged(logged: Logged, event: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while not (found := logged(event)):
        assert time.monotonic() < deadline, f"no {event} in 120 s"
        time.sleep(0.1)
    return found


def test_otel_endpoint_without_the_extra_ends_serve_with_one_line(tmp_path: Path) -> None:
    """TGRELAY_OTEL_ENDPOINT set where the OpenTelemetry SDK is not installed: one line saying
    which extra to install, exit code 1, before anything is written."""
    # First on the path, an opentelemetry.sdk that is not there: as without the `otel` extra
    # (opentelemetry-api itself comes with FastAPI).
    shadow = tmp_path / "shadow"
    (shadow / "opentelemetry" / "sdk").mkdir(parents=True)
    (shadow / "opentelemetry" / "sdk" / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named opentelemetry.sdk", name="opentelemetry.sdk")\n'
    )
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    env = environment(tmp_path, port) | {
        "TGRELAY_OTEL_ENDPOINT": "http://127.0.0.1:4318",
        "PYTHONPATH": str(shadow),
    }
    result = subprocess.run(
        [TGRELAY, "serve"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"error: {tracing.OTEL_EXTRA_MISSING}\n",
    )
    assert not (tmp_path / "data").exists()
