"""Property tests on the webhook intake: whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.background import ServedRelay, relay_in_thread
from tests.e2e.harness import free_port

ACCEPTABLE = {200, 400, 401, 404, 405, 413}


def _json_bytes(value: object) -> bytes:
    # The stdlib encoder, because it writes integers of any size (orjson stops at 64 bits).
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
update_like = st.fixed_dictionaries(
    {"update_id": json_values | st.integers(min_value=-5, max_value=2**64)},
    optional={
        "message": st.dictionaries(
            st.sampled_from(["message_id", "chat", "from", "text", "date"]), json_values
        )
        | json_values,
        "callback_query": json_values,
        "my_chat_member": json_values,
    },
)
bodies = st.binary(max_size=300) | json_values.map(_json_bytes) | update_like.map(_json_bytes)
header_names = st.sampled_from(
    ["content-type", "content-length", "x-telegram-bot-api-secret-token", "x-anything"]
)
# Printable ASCII; httpx itself refuses values with surrounding whitespace.
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40
).map(str.strip)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedRelay]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    with relay_in_thread(data_dir, free_port()) as served:
        yield served


@pytest.fixture(scope="module")
def client(relay: ServedRelay) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=relay.base_url, timeout=30) as client:
        yield client


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=bodies,
    secret=st.sampled_from(["right", "wrong", "missing"]),
    extra_headers=st.dictionaries(header_names, header_values, max_size=3),
    path=st.sampled_from(["bot", "unknown", "text", "huge"]),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
)
def test_intake_never_answers_5xx(
    relay: ServedRelay,
    client: httpx.Client,
    body: bytes,
    secret: str,
    extra_headers: dict[str, str],
    path: str,
    method: str,
) -> None:
    """Arbitrary bodies, headers, paths and methods get a 2xx or a specific 4xx, never a 5xx."""
    headers: dict[str, Any] = dict(extra_headers)
    headers.pop("content-length", None)  # a lying length only makes the client hang or fail
    if secret == "right":
        headers["x-telegram-bot-api-secret-token"] = relay.secret
    elif secret == "missing":
        headers.pop("x-telegram-bot-api-secret-token", None)
    target = {
        "bot": f"/telegram/{relay.bot_id}",
        "unknown": "/telegram/123456789",
        "text": "/telegram/not-a-bot",
        "huge": "/telegram/99999999999999999999999",
    }[path]
    response = client.request(method, target, content=body, headers=headers)
    assert response.status_code in ACCEPTABLE, (response.status_code, response.text)


def test_intake_rejects_oversized_bodies(relay: ServedRelay, client: httpx.Client) -> None:
    """A body over the size limit gets 413, even with the right secret."""
    limit = relay.runtime.settings.max_update_bytes
    body = b'{"update_id": 1, "message": {"text": "' + b"x" * limit + b'"}}'
    response = client.post(
        f"/telegram/{relay.bot_id}",
        content=body,
        headers={"x-telegram-bot-api-secret-token": relay.secret},
    )
    assert (response.status_code, response.json()) == (
        413,
        {"error": f"body larger than {limit} bytes"},
    )
