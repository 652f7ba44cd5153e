"""`tgrelay webhooks verify`: what a receiver got, checked from the command line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tgrelay.cli import app
from tgrelay.http import signing

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "A" * 32
MSG_ID = "msg_2x4Yq8"
# A body that ends in a newline: read byte for byte, it must not be stripped.
BODY = '{"id":"evt_2x4Yq8","type":"message.received","data":{"text":"привет"}}\n'


def signed_headers(*, age: timedelta = timedelta(0)) -> dict[str, str]:
    return signing.headers([SECRET], msg_id=MSG_ID, timestamp=datetime.now(UTC) - age, body=BODY)


def run(*args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (with rich's line wrapping undone) of one command."""
    result = CliRunner().invoke(app, ["webhooks", "verify", *args])
    return result.exit_code, " ".join(result.stdout.split()), " ".join(result.stderr.split())


def test_verify_inline_json_headers_and_body() -> None:
    """Headers as a JSON argument and the body as a string verify, naming the webhook."""
    headers = signed_headers()
    outcome = run("--secret", SECRET, "--headers", json.dumps(headers), "--body", BODY)
    expected = f"verified: webhook-id={MSG_ID} timestamp={headers['webhook-timestamp']}"
    assert outcome == (0, expected, "")


def test_verify_header_lines_and_body_from_files(tmp_path: Path) -> None:
    """A saved request's header lines and a body file (its trailing newline kept) verify."""
    headers = signed_headers()
    saved = tmp_path / "headers.txt"
    saved.write_text(
        "POST /webhooks/tgrelay HTTP/1.1\r\n"
        "Host: receiver.example:9000\r\n"
        + "".join(f"{name.title()}: {value}\r\n" for name, value in headers.items())
        + "\r\n"
    )
    body = tmp_path / "body.json"
    body.write_bytes(BODY.encode())
    outcome = run("--secret", SECRET, "--headers", f"@{saved}", "--body", f"@{body}")
    expected = f"verified: webhook-id={MSG_ID} timestamp={headers['webhook-timestamp']}"
    assert outcome == (0, expected, "")


def test_verify_json_header_file_and_secret_from_the_environment(tmp_path: Path) -> None:
    """A JSON header file works, and TGRELAY_WEBHOOK_SECRET stands in for --secret."""
    headers = signed_headers()
    saved = tmp_path / "headers.json"
    saved.write_text(json.dumps(headers))
    result = CliRunner().invoke(
        app,
        ["webhooks", "verify", "--headers", f"@{saved}", "--body", BODY],
        env={"TGRELAY_WEBHOOK_SECRET": SECRET},
    )
    expected = f"verified: webhook-id={MSG_ID} timestamp={headers['webhook-timestamp']}\n"
    assert (result.exit_code, result.stdout) == (0, expected)


WRONG = "error: no signature matches this secret (wrong secret, or the body or id was altered)"


@pytest.mark.parametrize(
    ("secret", "headers", "body", "error"),
    [
        (OTHER_SECRET, signed_headers, BODY, WRONG),
        (SECRET, signed_headers, BODY.rstrip("\n"), WRONG),
        (SECRET, lambda: {"webhook-id": MSG_ID}, BODY, "error: missing header webhook-timestamp"),
        ("not-a-secret", signed_headers, BODY, 'error: a webhook secret starts with "whsec_"'),
    ],
    ids=["wrong-secret", "stripped-body", "missing-header", "malformed-secret"],
)  # fmt: skip
def test_verify_refuses_with_the_reason(
    secret: str, headers: Callable[[], dict[str, str]], body: str, error: str
) -> None:
    """A webhook that does not verify ends with exit status 1 and the reason on stderr."""
    outcome = run("--secret", secret, "--headers", json.dumps(headers()), "--body", body)
    assert outcome == (1, "", error)


def test_verify_refuses_an_old_webhook() -> None:
    """A webhook signed ten minutes ago is too old for the default five-minute tolerance."""
    headers = signed_headers(age=timedelta(minutes=10))
    code, out, err = run("--secret", SECRET, "--headers", json.dumps(headers), "--body", BODY)
    assert (code, out) == (1, "")
    # The age is counted in whole seconds as the command runs, so it may read 600 or a bit more.
    assert re.fullmatch(
        r"error: webhook-timestamp is 60\d s old, more than the 300 s tolerance", err
    )


def test_verify_takes_a_wider_tolerance() -> None:
    """--tolerance lets an older saved webhook verify."""
    headers = signed_headers(age=timedelta(minutes=10))
    outcome = run(
        "--secret", SECRET, "--headers", json.dumps(headers), "--body", BODY, "--tolerance", "900"
    )
    expected = f"verified: webhook-id={MSG_ID} timestamp={headers['webhook-timestamp']}"
    assert outcome == (0, expected, "")


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ("webhook-id msg_1", 'error: header line 1 is not "Name: value" (nor is the text a JSON object)'),
        ('{"webhook-id": 1}', "error: the headers' JSON object must map names to strings"),
        ('{"webhook-id": ', "error: the headers are not valid JSON: Expecting value"),
        ("webhook-id: a\nwebhook-id: b", "error: the header webhook-id appears more than once"),
        ("@/nonexistent/headers.txt", "error: cannot read /nonexistent/headers.txt: No such file or directory"),
    ],
    ids=["not-a-header-line", "non-string-value", "broken-json", "repeated-header", "missing-file"],
)  # fmt: skip
def test_verify_refuses_unreadable_headers(headers: str, error: str) -> None:
    """Headers that cannot be read end with exit status 1 and say what is wrong."""
    assert run("--secret", SECRET, "--headers", headers, "--body", BODY) == (1, "", error)
