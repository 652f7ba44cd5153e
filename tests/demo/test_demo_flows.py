"""`tgrelay demo --flows`, run as a user runs it: the tour, then the billing-address flow with
examples/flow_app.py as a child process, to conversation.completed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .test_demo_command import STEPS as FIRST_STEPS

STEPS = [
    *FIRST_STEPS,
    "start the billing app, an endpoint of the workspace",
    "post the billing-address flow",
    "a user updates her billing address with the bot",
    "the app receives conversation.completed",
]
# What the bot says to Ann, in order, as the demo prints it (buttons in brackets).
BOT_LINES = [
    "    the bot: 'Hi Ann! What is the street and house number of your billing address?'",
    "    the bot: 'The postal code?'",
    "    the bot: 'The city?'",
    "    the bot: 'And the country?' [Germany | France | United Kingdom | United States]",
    "    the bot: 'Save this billing address? /  / 1 Main Street / 10115 Berlin / Germany'"
    " [Save | Change it]",
    "    the bot: 'Saved. Thank you, Ann!'",
]
# Three process starts and a CLI command, each importing for seconds on a busy machine,
# then the steps' own deadlines of 20 s at most.
RUN_SECONDS = 600


@pytest.mark.slow
def test_demo_flows_walks_the_billing_flow_to_completed_and_cleans_up(tmp_path: Path) -> None:
    """`tgrelay demo --flows` holds all 13 steps: Ann's /billing, four answers and two buttons
    get the flow's six messages, her conversation is completed with its whole history, the
    app gets conversation.completed and saved her address; nothing is left running."""
    script = Path(sys.executable).with_name("tgrelay")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    demo = subprocess.Popen(
        [str(script), "demo", "--flows"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = demo.communicate(timeout=RUN_SECONDS)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)  # so the demo stops its children
            demo.communicate(timeout=60)
    lines = out.splitlines()
    shown = f"stdout:\n{out}\nstderr:\n{err}"  # all of it, should an assertion fail

    assert (demo.returncode, err) == (0, ""), shown
    assert [line for line in lines if line.startswith("[")] == [
        f"[{number}/{len(STEPS)}] {name}" for number, name in enumerate(STEPS, start=1)
    ], shown
    assert len([line for line in lines if re.fullmatch(r"    ok \(\d+\.\d s\)", line)]) == 13, shown
    assert lines[-1] == "demo: all 13 steps held", shown
    assert [line for line in lines if line.startswith("    the bot: ")] == BOT_LINES, shown
    assert [line for line in lines if line.startswith("    Ann pressed ")] == [
        "    Ann pressed 'Germany' (callback data 'cv:country:DE')",
        "    Ann pressed 'Save' (callback data 'cv:confirm:yes')",
    ], shown
    assert (
        "    (start) → street, street → zip, zip → city, city → country, country → validate, "
        "validate → check, check → confirm, confirm → save, save → done"
    ) in lines, shown
    assert (
        "    the app got conversation.completed (signature verified) with the variables: "
        "street='1 Main Street', zip='10115', city='Berlin', country='DE', address_ok=True, "
        "problem=''"
    ) in lines, shown
    assert (
        "    and saved Ann's address once, at the Save button: {'street': '1 Main Street', "
        "'zip': '10115', 'city': 'Berlin', 'country': 'DE'}"
    ) in lines, shown
    # Gone once it has exited: its temporary directory and the processes it started.
    assert list(tmp_path.iterdir()) == [], shown
    for started in (
        "tgrelay serve answers at",
        "the billing app \\(examples/flow_app.py\\) answers at",
    ):
        url = re.search(started + r" (http://127\.0\.0\.1:\d+)", out)
        assert url is not None, shown
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url.group(1)}/healthz")
