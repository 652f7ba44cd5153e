"""The offline tour behind `tgrelay demo`: what a new user would do first, run for real.

The emulator and `tgrelay serve` run as child processes on free loopback ports, with a
temporary data directory, in polling mode; a small receiver in this process stands in for
the team's app. Each step prints what happened and the `curl` line that does the same by
hand, with the real ports and ids (the API key as `$KEY`).

With `flows`, the tour goes on with conversations (issue 21): examples/flow_app.py runs as
a third child, registered as an endpoint (its secret signs the flow's calls), the shipped
examples/flows/billing_address.json is posted, and a user walks it to conversation.completed.
The examples live in the source tree, not in the package: `--flows` needs a checkout.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

import tgrelay
from tgrelay.demo import children, runner
from tgrelay.demo.runner import Report, Step, StepFailed
from tgrelay.http import signing

# tgrelay.testing ships with the product (`tgrelay emulator`); its receiver is the demo's app.
from tgrelay.testing import receiver as receivers

T = TypeVar("T")

HOST = "127.0.0.1"
ANN: dict[str, Any] = {"id": 7001, "is_bot": False, "first_name": "Ann", "username": "ann"}
BOT_USERNAME = "demo_bot"
GROUP_TITLE = "Demo ops"
GREETING = "Hello, bot!"
ALERT = "Deploy finished: version 1.4.2 is live"
QUESTION = "Thanks! Is the changelog out too?"
# Seconds an API or emulator request may take before the step fails.
REQUEST_TIMEOUT = 10.0
# The conversations part (`--flows`): the shipped example, its app and Ann's answers.
EXAMPLES = Path(tgrelay.__file__).resolve().parents[2] / "examples"
FLOW_APP = EXAMPLES / "flow_app.py"
BILLING_FLOW = EXAMPLES / "flows" / "billing_address.json"
SHIPPED_ORIGIN = "http://127.0.0.1:8765"  # the app's origin the shipped flow names
BILLING_ANSWERS: tuple[tuple[str, str], ...] = (  # ("text" | "press", what Ann does)
    ("text", "/billing"),
    ("text", "1 Main Street"),
    ("text", "10115"),
    ("text", "Berlin"),
    ("press", "cv:country:DE"),  # the "Germany" button
    ("press", "cv:confirm:yes"),  # the "Save" button
)


@dataclass(frozen=True, kw_only=True)
class Deadlines:
    # A process's start, or a CLI command's whole run: each spent 7-9 s importing its
    # libraries on the shared 2-core machine (2026-12-06), 27-36 s with three demos at once.
    start: float = 120.0
    # Any other condition a step waits for.
    step: float = 20.0


def curl(method: str, url: str, *, body: Any = None, auth: bool = False) -> str:
    """The curl line of one request, ready to paste; the API key appears as $KEY."""
    parts = ["curl -s"]
    if method != ("POST" if body is not None else "GET"):
        parts.append(f"-X {method}")
    if auth:
        parts.append('-H "Authorization: Bearer $KEY"')
    if body is not None:
        parts.append("--json " + shlex.quote(json.dumps(body, ensure_ascii=False)))
    parts.append(shlex.quote(url))
    return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class Places:
    """Where the demo's processes listen and keep their files."""

    workdir: Path  # a temporary directory, deleted when the demo ends
    emulator_port: int
    api_port: int
    flow_app_port: int  # examples/flow_app.py's, with --flows

    @classmethod
    def free(cls, workdir: Path) -> Places:
        return cls(
            workdir=workdir,
            emulator_port=children.free_port(HOST),
            api_port=children.free_port(HOST),
            flow_app_port=children.free_port(HOST),
        )

    @property
    def flow_app_url(self) -> str:
        return f"http://{HOST}:{self.flow_app_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://{HOST}:{self.emulator_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def settings(self) -> dict[str, str]:
        """The environment of the demo's processes: its data directory, the emulator as
        Telegram, no public URL (so polling), and loopback endpoints allowed."""
        return {
            "TGRELAY_DATA_DIR": str(self.data_dir),
            "TGRELAY_TELEGRAM_API_URL": self.emulator_url,
            "TGRELAY_WEBHOOKS_ALLOW_PRIVATE": "true",
        }


class Tour:
    """The tour's steps, and what they learn on the way: the key and the ids they make."""

    # Filled in by the steps, in order.
    api_key: str
    bot_id: int
    session_id: str
    chat_id: int
    connection_id: str
    endpoint_id: str
    endpoint_secret: str
    delivery_files: tuple[Path, Path]  # the signed delivery's headers and body, as received
    flow_app_secret: str  # the app's endpoint's secret, which signs the flow's calls
    conversation_id: str

    def __init__(
        self,
        places: Places,
        processes: children.Children,
        stack: contextlib.AsyncExitStack,
        deadlines: Deadlines,
        *,
        flows: bool = False,
    ) -> None:
        self.places = places
        self.workdir = places.workdir
        self.data_dir = places.data_dir
        self.emulator_url = places.emulator_url
        self.api_url = places.api_url
        self.processes = processes
        self.stack = stack
        self.deadlines = deadlines
        self.flows = flows
        self.receiver: receivers.RunningReceiver | None = None

    @classmethod
    async def open(
        cls,
        workdir: Path,
        stack: contextlib.AsyncExitStack,
        deadlines: Deadlines,
        *,
        flows: bool = False,
    ) -> Tour:
        """A tour whose processes, clients and receiver are closed when `stack` closes."""
        places = Places.free(workdir)
        processes = await stack.enter_async_context(
            children.running(workdir, children.environment(places.settings()))
        )
        tour = cls(places, processes, stack, deadlines, flows=flows)
        await stack.enter_async_context(tour.emulator)
        await stack.enter_async_context(tour.api)
        await stack.enter_async_context(tour.flow_app)
        return tour

    @functools.cached_property
    def emulator(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.emulator_url, timeout=REQUEST_TIMEOUT)

    @functools.cached_property
    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=REQUEST_TIMEOUT)

    @functools.cached_property
    def flow_app(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.places.flow_app_url, timeout=REQUEST_TIMEOUT)

    def steps(self) -> list[Step]:
        return self.first_steps() + (self.flow_steps() if self.flows else [])

    def flow_steps(self) -> list[Step]:
        """`--flows`: the conversations part, after the tour's first steps."""
        return [
            Step(name="start the billing app, an endpoint of the workspace", run=self.start_app),
            Step(name="post the billing-address flow", run=self.post_flow),
            Step(name="a user updates her billing address with the bot", run=self.converse),
            Step(name="the app receives conversation.completed", run=self.completed),
        ]

    def first_steps(self) -> list[Step]:
        return [
            Step(name="start the Telegram emulator and tgrelay serve", run=self.start),
            Step(name="create a workspace", run=self.create_workspace),
            Step(name="connect a bot", run=self.connect_bot),
            Step(name="a user writes to the bot", run=self.user_writes),
            Step(name="link a group, phase 1: /start <token> in private", run=self.link_phase_1),
            Step(name="link a group, phase 2: the same user adds the bot", run=self.link_phase_2),
            Step(name="send an alert to the group", run=self.send_alert),
            Step(name="subscribe a local receiver", run=self.subscribe),
            Step(name="verify a signed delivery", run=self.verify_delivery),
        ]

    # --- the steps ----------------------------------------------------------------------

    async def start(self, report: Report) -> None:
        # Both start at once: each spends seconds importing, and neither needs the other yet.
        emulator = ["emulator", "--host", HOST, "--port", str(self.places.emulator_port)]
        serve = ["serve", "--host", HOST, "--port", str(self.places.api_port)]
        await self.processes.start("the emulator", emulator, self.workdir / "emulator.log")
        await self.processes.start("tgrelay serve", serve, self.workdir / "serve.log")
        report.command(shlex.join(["tgrelay", *emulator]) + " &")
        settings = self.places.settings().items()
        exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in settings)
        report.command(f"export {exports}")
        report.command(shlex.join(["tgrelay", *serve]) + " &")
        await self._until(
            lambda: self._answers(self.emulator, "/_emulator/clock"),
            f"the emulator to answer at {self.emulator_url}",
            timeout=self.deadlines.start,
        )
        report.said(
            f"the emulator, standing in for api.telegram.org, answers at {self.emulator_url}"
        )
        await self._until(
            lambda: self._answers(self.api, "/healthz"),
            f"tgrelay serve to answer {self.api_url}/healthz",
            timeout=self.deadlines.start,
        )
        report.said(
            f"tgrelay serve answers at {self.api_url}: SQLite in {self.data_dir}, bots in polling mode"
        )

    async def create_workspace(self, report: Report) -> None:
        args = ["workspace", "create", "Demo team", "--json"]
        report.command(shlex.join(["tgrelay", *args]))
        printed = await self.processes.output(args, timeout=self.deadlines.start)
        try:
            created = json.loads(printed)
            workspace_id, self.api_key = str(created["workspace_id"]), str(created["api_key"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StepFailed(f"`tgrelay {shlex.join(args)}` printed {printed!r}") from exc
        self.api.headers["Authorization"] = f"Bearer {self.api_key}"
        report.said(f"workspace {workspace_id}, with its first API key ($KEY below; shown once):")
        report.command(f"KEY={self.api_key}")

    async def connect_bot(self, report: Report) -> None:
        made = await self._post(
            report,
            self.emulator,
            "/_emulator/bots",
            {"username": BOT_USERNAME, "first_name": "Demo"},
            expect=201,
        )
        self.bot_id = int(made["id"])
        report.said(f"the emulator made @{made['username']} (id {self.bot_id}), as BotFather would")
        bot = await self._post(report, self.api, "/v1/bots", {"token": made["token"]}, expect=201)
        report.said(
            f"tgrelay checked the token with getMe and connected @{bot['username']}: "
            f"{bot['mode']} mode, status {bot['status']}"
        )

    async def user_writes(self, report: Report) -> None:
        message = {"bot_id": self.bot_id, "from": ANN, "text": GREETING}
        update = await self._post(report, self.emulator, "/_emulator/updates", message)
        update_id = int(update["update_id"])
        report.said(f"Ann wrote {GREETING!r} to @{BOT_USERNAME} in private: update {update_id}")
        path = f"/v1/bots/{self.bot_id}/updates"
        report.command(curl("GET", self.api_url + path, auth=True))
        seen: list[str] = []

        async def processed() -> dict[str, Any] | None:
            page = await self._call(self.api, "GET", path)
            for stored in page["updates"]:
                if stored["update_id"] != update_id:
                    continue
                if not seen or seen[-1] != stored["status"]:
                    seen.append(stored["status"])
                if stored["status"] == "dead":
                    raise StepFailed(f"update {update_id} is dead: {stored['last_error']}")
                if stored["status"] == "processed":
                    found: dict[str, Any] = stored
                    return found
            return None

        stored = await self._until(processed, f"update {update_id} to be stored and processed")
        # The worker is quick: the first look often finds the update processed already.
        seen_text = "" if seen == ["processed"] else f" (statuses seen: {' → '.join(seen)})"
        report.said(
            f"tgrelay fetched it by {stored['source']}, stored it, then processed it{seen_text}"
        )

    async def link_phase_1(self, report: Report) -> None:
        session = await self._post(
            report, self.api, "/v1/connect-sessions", {"bot_id": self.bot_id}, expect=201
        )
        self.session_id = str(session["id"])
        report.said(
            f"connect session {self.session_id}: its link {session['start_link']} "
            f"(a QR code at {session['qr_svg_url']}) is valid until {session['expires_at']}"
        )
        start = {"bot_id": self.bot_id, "from": ANN, "text": f"/start {session['token']}"}
        await self._post(report, self.emulator, "/_emulator/updates", start)
        report.said("Ann opened the link: Telegram sent the bot /start with the token")
        verified = await self._until(
            self._session_in("waiting_group"),
            f"session {self.session_id} to verify Ann (state waiting_group)",
        )
        user = verified["user"]
        report.said(
            f"tgrelay verified Ann (Telegram user {user['id']}); the session is waiting_group"
        )

    async def link_phase_2(self, report: Report) -> None:
        chat = await self._post(
            report,
            self.emulator,
            "/_emulator/chats",
            {"type": "supergroup", "title": GROUP_TITLE},
            expect=201,
        )
        self.chat_id = int(chat["id"])
        report.said(f"the emulator made the supergroup {GROUP_TITLE!r} (chat {self.chat_id})")
        await self._post(
            report,
            self.emulator,
            f"/_emulator/chats/{self.chat_id}/members",
            {"bot_id": self.bot_id, "by": ANN},
        )
        report.said(f"Ann added @{BOT_USERNAME} to it")
        path = f"/v1/connect-sessions/{self.session_id}"
        report.command(curl("GET", self.api_url + path, auth=True))
        connected = await self._until(
            self._session_in("connected"), f"session {self.session_id} to be connected"
        )
        connection = connected["connection"]
        self.connection_id = str(connection["id"])
        report.said(
            f"the session is connected: connection {self.connection_id} links "
            f"{connection['title']!r} (chat {connection['chat_id']}) to the workspace"
        )

    async def send_alert(self, report: Report) -> None:
        queued = await self._post(
            report,
            self.api,
            "/v1/notifications",
            {"connection_id": self.connection_id, "text": ALERT},
            expect=202,
        )
        notification_id = str(queued["id"])
        report.said(f"notification {notification_id} is {queued['status']}")
        path = f"/v1/notifications/{notification_id}"
        report.command(curl("GET", self.api_url + path, auth=True))

        async def sent() -> dict[str, Any] | None:
            found: dict[str, Any] = await self._call(self.api, "GET", path)
            if found["status"] == "failed":
                raise StepFailed(f"notification {notification_id} failed: {found['error']}")
            return found if found["status"] == "sent" else None

        done = await self._until(sent, f"notification {notification_id} to be sent")
        ids = ", ".join(str(message_id) for message_id in done["message_ids"])
        report.said(f"it is sent: Telegram message id {ids}")
        messages = f"/_emulator/chats/{self.chat_id}/messages"
        report.command(curl("GET", self.emulator_url + messages))

        async def shown() -> bool | None:
            texts = [m.get("text") for m in await self._call(self.emulator, "GET", messages)]
            return True if ALERT in texts else None

        await self._until(shown, f"the emulator to show the alert in {GROUP_TITLE!r}")
        report.said(f"the emulator shows it in {GROUP_TITLE!r}: {ALERT!r}")

    async def subscribe(self, report: Report) -> None:
        running = await self.stack.enter_async_context(receivers.receiving(host=HOST))
        self.receiver = running
        report.said(
            f"a receiver, standing in for your app, listens at {running.url} "
            "(allowed by TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true: it is on loopback)"
        )
        endpoint = await self._post(
            report,
            self.api,
            "/v1/endpoints",
            {
                "url": running.url,
                "event_types": ["message.received"],
                "description": "tgrelay demo receiver",
            },
            expect=201,
        )
        self.endpoint_id, self.endpoint_secret = str(endpoint["id"]), str(endpoint["secret"])
        report.said(
            f"endpoint {self.endpoint_id} gets message.received events, signed with its "
            f"secret (shown once): {self.endpoint_secret}"
        )

    async def verify_delivery(self, report: Report) -> None:
        assert self.receiver is not None, "the receiver starts in the step before"
        receiver = self.receiver.receiver
        message = {"bot_id": self.bot_id, "from": ANN, "chat": {"id": self.chat_id}}
        await self._post(report, self.emulator, "/_emulator/updates", {**message, "text": QUESTION})
        report.said(f"Ann wrote {QUESTION!r} in {GROUP_TITLE!r}")

        async def arrived() -> receivers.Delivery | None:
            for delivery in receiver.deliveries:
                with contextlib.suppress(ValueError):
                    event = delivery.json()
                    if event["type"] == "message.received" and event["data"]["text"] == QUESTION:
                        return delivery
            return None

        delivery = await self._until(arrived, "the receiver to get the message.received event")
        try:
            signing.verify(self.endpoint_secret, headers=delivery.headers, body=delivery.body)
        except signing.VerificationFailed as exc:
            raise StepFailed(f"the delivery's signature does not verify: {exc.message}") from exc
        webhook_id = delivery.headers[signing.ID_HEADER]
        report.said(
            f"the receiver got {delivery.method} {delivery.path} (webhook-id {webhook_id}); "
            "its Standard Webhooks signature verifies with the endpoint's secret"
        )
        headers, body = self.workdir / "delivery-headers.json", self.workdir / "delivery-body.json"
        headers.write_text(json.dumps(delivery.headers, indent=2))
        body.write_bytes(delivery.body)
        self.delivery_files = (headers, body)
        path = f"/v1/endpoints/{self.endpoint_id}/deliveries"
        report.command(curl("GET", f"{self.api_url}{path}?status=delivered", auth=True))

        async def delivered() -> dict[str, Any] | None:
            page = await self._call(self.api, "GET", path, params={"status": "delivered"})
            for found in page["deliveries"]:
                if found["event_id"] == webhook_id:
                    recorded: dict[str, Any] = found
                    return recorded
            return None

        recorded = await self._until(delivered, f"delivery of {webhook_id} to be recorded")
        report.said(
            f"tgrelay recorded delivery {recorded['id']}: delivered, "
            f"after {recorded['attempts']} attempt(s)"
        )

    # --- the conversations part (--flows) -----------------------------------------------

    async def start_app(self, report: Report) -> None:
        if not FLOW_APP.is_file() or not BILLING_FLOW.is_file():
            raise StepFailed(
                f"{FLOW_APP} is not here: `tgrelay demo --flows` runs from a source checkout, "
                "whose examples/ directory holds the flow and its app"
            )
        app_url = self.places.flow_app_url
        endpoint = await self._post(
            report,
            self.api,
            "/v1/endpoints",
            {
                "url": f"{app_url}/events",
                "event_types": ["conversation.*"],
                "description": "the billing-address flow's app",
            },
            expect=201,
        )
        self.flow_app_secret = str(endpoint["secret"])
        report.said(
            f"endpoint {endpoint['id']} gets conversation.* events at {app_url}/events; its "
            "secret also signs the flow's calls to the same origin"
        )
        args = ["--host", HOST, "--port", str(self.places.flow_app_port)]
        await self.processes.start_script(
            "the billing app",
            FLOW_APP,
            [*args, "--secret", self.flow_app_secret],
            self.workdir / "flow_app.log",
        )
        report.command(
            shlex.join(["python", "examples/flow_app.py", *args, "--secret", "$SECRET"]) + " &"
        )
        await self._until(
            lambda: self._answers(self.flow_app, "/addresses"),
            f"the billing app to answer at {app_url}",
            timeout=self.deadlines.start,
        )
        report.said(
            f"the billing app (examples/flow_app.py) answers at {app_url}: it validates and "
            "saves addresses, and checks every request's signature with that secret"
        )

    async def post_flow(self, report: Report) -> None:
        app_url = self.places.flow_app_url
        document = BILLING_FLOW.read_text().replace(SHIPPED_ORIGIN, app_url)
        report.command(
            f"sed 's|{SHIPPED_ORIGIN}|{app_url}|' examples/flows/billing_address.json | "
            f'curl -s -H "Authorization: Bearer $KEY" --json @- {self.api_url}/v1/flows'
        )
        flow = await self._call(
            self.api,
            "POST",
            "/v1/flows",
            content=document.encode(),
            headers={"Content-Type": "application/json"},
            expect=201,
        )
        steps = flow["document"]["steps"]
        calls = sum(1 for step in steps if step["kind"] == "call")
        report.said(
            f"flow {flow['name']!r} version {flow['version']} is enabled: "
            f"{flow['trigger']['command']} starts it; {len(steps)} steps, {calls} of them calls "
            f"to the app at {app_url}"
        )

    async def converse(self, report: Report) -> None:
        chat = f"/_emulator/chats/{ANN['id']}/messages"
        params = {"bot_id": self.bot_id}
        earlier = len(await self._call(self.emulator, "GET", chat, params=params))
        for number, (kind, answer) in enumerate(BILLING_ANSWERS, start=1):
            if kind == "text":
                body = {"bot_id": self.bot_id, "from": ANN, "text": answer}
                await self._post(report, self.emulator, "/_emulator/updates", body)
                report.said(f"Ann wrote {answer!r}")
            else:
                last = (await self._call(self.emulator, "GET", chat, params=params))[-1]
                press = f"{chat}/{last['message_id']}/press"
                body = {"bot_id": self.bot_id, "from": ANN, "data": answer}
                await self._post(report, self.emulator, press, body)
                label = _button_label(last, answer)
                report.said(f"Ann pressed {label!r} (callback data {answer!r})")

            async def replied(count: int = earlier + number) -> dict[str, Any] | None:
                found = await self._call(self.emulator, "GET", chat, params=params)
                return found[count - 1] if len(found) >= count else None

            reply = await self._until(replied, f"the bot's reply to {answer!r}")
            buttons = [label for row in _keyboard(reply) for label, _ in row]
            shown = f" [{' | '.join(buttons)}]" if buttons else ""
            text = str(reply.get("text", "")).replace("\n", " / ")
            report.said(f"the bot: {text!r}{shown}")
        path = "/v1/conversations"
        query = {"flow": "billing-address", "status": "completed"}
        report.command(
            curl("GET", f"{self.api_url}{path}?flow=billing-address&status=completed", auth=True)
        )

        async def completed() -> dict[str, Any] | None:
            page = await self._call(self.api, "GET", path, params=query)
            found = [c for c in page["conversations"] if c["user_id"] == ANN["id"]]
            return found[0] if found else None

        conversation = await self._until(completed, "Ann's conversation to be completed")
        self.conversation_id = str(conversation["id"])
        report.said(
            f"conversation {self.conversation_id} is {conversation['status']} "
            f"(flow {conversation['flow']!r} version {conversation['version']}); its history:"
        )
        report.command(curl("GET", f"{self.api_url}{path}/{self.conversation_id}", auth=True))
        detail = await self._call(self.api, "GET", f"{path}/{self.conversation_id}")
        moves = [f"{m['from'] or '(start)'} → {m['to'] or '(end)'}" for m in detail["history"]]
        report.said(", ".join(moves))

    async def completed(self, report: Report) -> None:
        report.command(curl("GET", f"{self.places.flow_app_url}/events"))

        async def received() -> dict[str, Any] | None:
            for event in await self._call(self.flow_app, "GET", "/events"):
                if event.get("type") == "conversation.completed":
                    found: dict[str, Any] = event
                    return found
            return None

        event = await self._until(received, "the billing app to get conversation.completed")
        variables = event["data"]["variables"]
        report.said(
            f"the app got {event['type']} (signature verified) with the variables: "
            + ", ".join(f"{k}={v!r}" for k, v in variables.items() if k != "formatted")
        )
        saved = (await self._call(self.flow_app, "GET", "/addresses")).get(str(ANN["id"]))
        if saved is None:
            raise StepFailed("the billing app saved no address for Ann")
        report.said(f"and saved Ann's address once, at the Save button: {saved}")

    # --- after the steps ----------------------------------------------------------------

    def running_summary(self) -> list[str]:
        """What `--keep` prints once every step held."""
        headers, body = self.delivery_files
        return [
            "tgrelay demo keeps running; Ctrl-C stops it and deletes its data.",
            f"  UI:        {self.api_url}/ui/  (sign in with the API key)",
            f"  API key:   {self.api_key}",
            f"  API docs:  {self.api_url}/docs",
            f"  emulator:  {self.emulator_url}  (its control routes: /_emulator/…)",
            f"  data:      {self.data_dir}  (logs: {self.workdir}/serve.log, emulator.log)",
            "  verify the delivery again, as a receiver would:",
            f"    tgrelay webhooks verify --secret {self.endpoint_secret} "
            f"--headers @{headers} --body @{body}",
            *(
                [
                    f"  billing app: {self.places.flow_app_url}  (/addresses, /events; "
                    f"log: {self.workdir}/flow_app.log)",
                    f"  conversation: {self.api_url}/ui/conversations/{self.conversation_id}",
                ]
                if self.flows
                else []
            ),
        ]

    # --- helpers ------------------------------------------------------------------------

    async def _until(
        self, check: Callable[[], Awaitable[T | None]], what: str, *, timeout: float | None = None
    ) -> T:
        """`runner.until`, failing at once (with its log's end) when a child has exited."""

        async def checked() -> T | None:
            self.processes.check()
            return await check()

        return await runner.until(
            checked, what, timeout=self.deadlines.step if timeout is None else timeout
        )

    async def _answers(self, client: httpx.AsyncClient, path: str) -> bool | None:
        try:
            response = await client.get(path)
        except httpx.TransportError:
            return None  # not listening yet
        return True if response.status_code == 200 else None

    async def _post(
        self,
        report: Report,
        client: httpx.AsyncClient,
        path: str,
        body: dict[str, Any],
        *,
        expect: int = 200,
    ) -> Any:
        """POST `body` after printing its curl line; the answer's JSON."""
        auth = client is self.api
        report.command(curl("POST", f"{client.base_url}".rstrip("/") + path, body=body, auth=auth))
        return await self._call(client, "POST", path, json=body, expect=expect)

    async def _call(
        self, client: httpx.AsyncClient, method: str, path: str, *, expect: int = 200, **kw: Any
    ) -> Any:
        """One request that must answer `expect`; its JSON body."""
        self.processes.check()
        try:
            response = await client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise StepFailed(
                f"{method} {client.base_url}{path} failed: {type(exc).__name__} {exc}"
            ) from exc
        if response.status_code != expect:
            raise StepFailed(
                f"{method} {path} answered {response.status_code}, not {expect}: "
                f"{response.text[:500]}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise StepFailed(f"{method} {path} answered no JSON: {response.text[:200]}") from exc

    def _session_in(self, state: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
        async def check() -> dict[str, Any] | None:
            session: dict[str, Any] = await self._call(
                self.api, "GET", f"/v1/connect-sessions/{self.session_id}"
            )
            if session["state"] in ("expired", "cancelled"):
                raise StepFailed(f"session {self.session_id} is {session['state']}")
            return session if session["state"] == state else None

        return check


def _keyboard(message: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """A message's inline keyboard as rows of (label, callback data)."""
    markup = message.get("reply_markup") or {}
    return [
        [(str(b.get("text", "")), str(b.get("callback_data", ""))) for b in row]
        for row in markup.get("inline_keyboard", [])
    ]


def _button_label(message: dict[str, Any], data: str) -> str:
    labels = [label for row in _keyboard(message) for label, d in row if d == data]
    if not labels:
        raise StepFailed(f"the bot's last message has no button {data!r}: {message}")
    return labels[0]
