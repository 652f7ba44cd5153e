"""What the demo prints and gives its processes: curl lines to paste, an environment of its own."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tgrelay.demo import children, tour


@pytest.mark.parametrize(
    ("method", "url", "body", "auth", "line"),
    [
        (
            "GET",
            "http://127.0.0.1:8000/healthz",
            None,
            False,
            "curl -s http://127.0.0.1:8000/healthz",
        ),
        (
            "GET",
            "http://127.0.0.1:8000/v1/endpoints/ep_1/deliveries?status=delivered",
            None,
            True,
            'curl -s -H "Authorization: Bearer $KEY" '
            "'http://127.0.0.1:8000/v1/endpoints/ep_1/deliveries?status=delivered'",
        ),
        (
            "POST",
            "http://127.0.0.1:8081/_emulator/updates",
            {"bot_id": 1, "text": "it's done"},
            False,
            'curl -s --json \'{"bot_id": 1, "text": "it\'"\'"\'s done"}\' '
            "http://127.0.0.1:8081/_emulator/updates",
        ),
        (
            "DELETE",
            "http://127.0.0.1:8000/v1/bots/1",
            None,
            True,
            'curl -s -X DELETE -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/v1/bots/1',
        ),
    ],
)
def test_curl_lines_are_ready_to_paste(
    method: str, url: str, body: dict[str, object] | None, auth: bool, line: str
) -> None:
    """Each request becomes one shell line: the method only when curl would not infer it, the key as $KEY, the JSON quoted."""
    assert tour.curl(method, url, body=body, auth=auth) == line


def test_a_printed_json_body_reaches_curl_unchanged() -> None:
    """The shell splits a printed curl line back into the exact JSON body that was sent."""
    body = {"from": {"first_name": "Ann"}, "text": '/start a\'b "c" $HOME'}

    words = shlex.split(tour.curl("POST", "http://127.0.0.1:8081/_emulator/updates", body=body))

    assert words == [
        "curl",
        "-s",
        "--json",
        '{"from": {"first_name": "Ann"}, "text": "/start a\'b \\"c\\" $HOME"}',
        "http://127.0.0.1:8081/_emulator/updates",
    ]


def test_the_processes_get_the_demos_settings_and_none_of_the_operators(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An operator's TGRELAY_ variables stay out of the demo's processes; its own settings go in."""
    monkeypatch.setenv("TGRELAY_DATABASE_URL", "postgresql://prod@db/tgrelay")
    monkeypatch.setenv("TGRELAY_PUBLIC_URL", "https://relay.example.com")
    monkeypatch.setenv("DEMO_TEST_OTHER", "kept")
    places = tour.Places(workdir=tmp_path, emulator_port=8081, api_port=8000, flow_app_port=8765)

    env = children.environment(places.settings())

    assert {name: value for name, value in env.items() if name.startswith("TGRELAY_")} == {
        "TGRELAY_DATA_DIR": str(tmp_path / "data"),
        "TGRELAY_TELEGRAM_API_URL": "http://127.0.0.1:8081",
        "TGRELAY_WEBHOOKS_ALLOW_PRIVATE": "true",
    }
    assert (env["DEMO_TEST_OTHER"], env["PYTHONUNBUFFERED"]) == ("kept", "1")
