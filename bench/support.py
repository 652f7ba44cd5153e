"""Benchmark the support desk: customers open tickets and talk with agents in forum topics.

Starts the emulator and the default `tgrelay serve` (webhooks, worker in the process, SQLite
unless --db postgres) as subprocesses on loopback, connects a bot, links a forum supergroup
with the bot as administrator, and makes it a desk. Then:

1. C customers each write a first message in private, all at once: each opens a ticket,
   whose topic and header tgrelay creates in the forum (and whose greeting it sends).
2. The customers' other messages and the agents' replies in the topics (M each way in all,
   the first messages included) are written in rounds over the tickets, each ticket's in
   order, at --rate messages a second (both ways together; 0: as fast as the emulator takes
   them, which measures how fast a backlog drains rather than latency).

It waits until the emulator holds every copy, then checks from the emulator's chats that each
message was relayed exactly once and in order per ticket, and counts 429s. The relay latency
(stored → sent) of phase 2 comes from tgrelay's own histogram, `tgrelay_support_relay_seconds`.

    uv run python bench/support.py                        # 500 customers, 2,000 messages each way, 25/s
    uv run python bench/support.py --rate 0 --customers 100 --messages 1000   # the most it takes
    uv run python bench/support.py --limits telegram --customers 5 --messages 10 --rate 1
    uv run python bench/support.py --rate 20 --kills 3    # SIGKILL serve 3 times in phase 2
    uv run python bench/support.py --db postgres

`--limits none` (the default) lifts Telegram's limits on both sides, so the relay is measured
where they do not bind (a bot may send 30 messages a second in all, and one forum gets 20 a
minute from it: 4,000 relays into one forum would take hours). `--limits telegram` sets
Telegram's limits in the emulator, the same in tgrelay, and a topic creation limit in the
emulator, and expects zero 429s. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from alerts import call, link_group, until
from servers import (
    create_workspace,
    free_port,
    process,
    recreate_postgres_database,
    serve_env,
    wait_http,
)

POSTGRES_DATABASE = "tgrelay_bench_support"
FIRST_CUSTOMER_ID = 300_001
FIRST_AGENT_ID = 7001
AGENTS = 10
# Messages written to the emulator at once (each ticket's in order, by one writer).
WRITERS = 32
# Phase 2's pace: a bot may send 30 messages a second in all (Telegram), and a desk's
# headers and notes are sends too: 25 relays a second is about the most one desk makes
# where Telegram's limits do not bind.
DEFAULT_RATE = 25.0
STEP_TIMEOUT_SECONDS = 60.0
RUN_TIMEOUT_SECONDS = 900.0
# Telegram's limits (1/s in a chat, 20/min in a group, 30/s per bot) and, for topics, a
# figure Telegram does not publish: the emulator's and tgrelay's, the same.
TELEGRAM_LIMITS = {"per_chat": [1, 1.0], "per_group": [20, 60.0], "per_bot": [30, 1.0]}
TOPIC_LIMIT = [20, 60.0]
UNBOUND = [100_000, 1.0]
RELAY_HISTOGRAM = "tgrelay_support_relay_seconds"
DUPLICATE_LOG = "telegram.possible_duplicate_send"


def customer(index: int) -> dict[str, Any]:
    user_id = FIRST_CUSTOMER_ID + index
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": f"Customer{index}",
        "username": f"customer{index}",
        "language_code": "en",
    }


def agent(index: int) -> dict[str, Any]:
    user_id = FIRST_AGENT_ID + index
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": f"Agent{index}",
        "username": f"agent{index}",
    }


def customer_text(ticket: int, n: int) -> str:
    return f"c{ticket}-{n}"


def agent_text(ticket: int, n: int) -> str:
    return f"a{ticket}-{n}"


def spread(total: int, over: int) -> list[int]:
    """`total` messages over `over` tickets, as evenly as they go (the first get the rest)."""
    base, rest = divmod(total, over)
    return [base + (1 if i < rest else 0) for i in range(over)]


@dataclass(frozen=True, kw_only=True)
class Plan:
    customers: int
    customer_messages: list[int]  # per ticket, the first included
    agent_messages: list[int]  # per ticket

    @classmethod
    def of(cls, customers: int, messages: int) -> Plan:
        return cls(
            customers=customers,
            customer_messages=spread(messages, customers),
            agent_messages=spread(messages, customers),
        )


@dataclass(frozen=True, kw_only=True)
class Options:
    plan: Plan
    db: str  # sqlite | postgres
    limits: str  # none | telegram
    kills: int  # SIGKILLs of serve during phase 2
    rate: float  # phase 2's messages per second, both ways together; 0: as fast as taken


@dataclass(frozen=True, kw_only=True)
class Result:
    opening: float  # phase 1: from the first message until every topic existed
    talking: float  # phase 2: from its first message until every copy arrived
    talked: int  # messages relayed in phase 2, both directions
    lost: int
    duplicated: int
    out_of_order: int  # tickets whose copies arrived in another order
    rejected: int  # 429s
    possible_duplicates: int  # sends tgrelay counted as possibly doubled (kills)
    latency: dict[str, float]  # phase 2's p50/p90/p99 of stored → sent, from the histogram
    buckets: Buckets  # phase 2's histogram of stored → sent


# --- the run --------------------------------------------------------------------------------


class Serve:
    """`tgrelay serve`, restartable after a SIGKILL; its logs accumulate in one file."""

    def __init__(self, env: dict[str, str], log: Path, url: str) -> None:
        self.env, self.log, self.url = env, log, url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tgrelay", "serve"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_http(f"{self.url}/readyz", timeout=STEP_TIMEOUT_SECONDS)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def post_update(emulator: httpx.AsyncClient, body: dict[str, Any]) -> None:
    await call(emulator, "POST", "/_emulator/updates", json=body)


async def tickets_of(api: httpx.AsyncClient, desk_id: str) -> list[dict[str, Any]]:
    """Every ticket of the desk, page by page."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"desk_id": desk_id, "limit": 200}
    while True:
        page = await call(api, "GET", "/v1/tickets", params=params)
        found += page["tickets"]
        if page["next_before"] is None:
            return found
        params["before"] = page["next_before"]


async def sent_count(emulator: httpx.AsyncClient, chat_ids: list[int]) -> int:
    sent = (await call(emulator, "GET", "/_emulator/flood"))["sent_by_chat"]
    return sum(sent.get(str(chat_id), 0) for chat_id in chat_ids)


async def texts_by_thread(emulator: httpx.AsyncClient, chat_id: int) -> dict[int | None, list[str]]:
    by_thread: dict[int | None, list[str]] = {}
    for message in await call(emulator, "GET", f"/_emulator/chats/{chat_id}/messages"):
        by_thread.setdefault(message.get("message_thread_id"), []).append(
            message.get("text") or message.get("caption") or ""
        )
    return by_thread


def compare(expected: list[str], got: list[str]) -> tuple[int, int, bool]:
    """(lost, duplicated, in order) of `expected` messages among `got`."""
    counts = Counter(got)
    lost = sum(1 for text in expected if counts[text] == 0)
    duplicated = sum(counts[text] - 1 for text in expected if counts[text] > 1)
    seen: list[str] = []
    for text in got:
        if text in expected and text not in seen:
            seen.append(text)
    return lost, duplicated, seen == [text for text in expected if counts[text] > 0]


Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), ascending


def histogram_buckets(metrics_text: str, name: str) -> Buckets:
    """A Prometheus histogram's cumulative buckets, from /metrics."""
    buckets: Buckets = []
    for family in text_string_to_metric_families(metrics_text):
        if family.name == name:
            buckets += [
                (float(sample.labels["le"]), sample.value)
                for sample in family.samples
                if sample.name == f"{name}_bucket"
            ]
    return sorted(buckets)


def since(later: Buckets, earlier: Buckets) -> Buckets:
    """The observations made between two readings of the same histogram."""
    before = dict(earlier)
    return [(bound, count - before.get(bound, 0.0)) for bound, count in later]


def quantiles(buckets: Buckets, wanted: tuple[float, ...]) -> dict[str, float]:
    """Quantiles interpolated within buckets, as PromQL's histogram_quantile does."""
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]
    found: dict[str, float] = {}
    for q in wanted:
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank:
                if bound == float("inf"):
                    found[f"p{q * 100:g}"] = lower_bound
                else:
                    share = (rank - lower_count) / max(count - lower_count, 1e-9)
                    found[f"p{q * 100:g}"] = lower_bound + (bound - lower_bound) * share
                break
            lower_bound, lower_count = bound, count
    return found


async def relays(api: httpx.AsyncClient) -> Buckets:
    return histogram_buckets((await api.get("/metrics")).text, RELAY_HISTOGRAM)


async def drive(
    api: httpx.AsyncClient,
    emulator: httpx.AsyncClient,
    serve: Serve,
    options: Options,
) -> Result:
    plan, limits, kills, rate = options.plan, options.limits, options.kills, options.rate
    bot = await call(emulator, "POST", "/_emulator/bots", json={"username": "desk_bench_bot"})
    await call(api, "POST", "/v1/bots", json={"token": bot["token"]})
    bot_id = bot["id"]
    connection = await link_group(api, emulator, bot_id, 0, forum=True)
    desk_chat = connection["chat_id"]
    desk = await call(
        api, "POST", "/v1/support/desks", json={"bot_id": bot_id, "connection_id": connection["id"]}
    )
    if limits == "telegram":
        await call(emulator, "PUT", "/_emulator/flood", json={"enabled": True, **TELEGRAM_LIMITS})
        await call(emulator, "PUT", "/_emulator/topic-limit", json={"per_chat": TOPIC_LIMIT})
    customer_chats = [customer(i)["id"] for i in range(plan.customers)]

    # Phase 1: every customer's first message opens a ticket and its topic.
    started = time.monotonic()
    firsts = iter(range(plan.customers))

    async def open_tickets() -> None:
        for i in firsts:
            await post_update(
                emulator, {"bot_id": bot_id, "from": customer(i), "text": customer_text(i, 0)}
            )

    await asyncio.gather(*(open_tickets() for _ in range(WRITERS)))

    async def opened() -> bool:
        """Every first message is in its topic (which the ticket's first send made)."""
        relayed = await relays(api)
        return bool(relayed) and relayed[-1][1] >= plan.customers

    await until(
        opened, f"{plan.customers} tickets' first messages", timeout=RUN_TIMEOUT_SECONDS, every=0.25
    )
    opening = time.monotonic() - started
    threads = {
        int(t["customer"]["id"]) - FIRST_CUSTOMER_ID: int(t["topic_id"])
        for t in await tickets_of(api, desk["id"])
    }
    relayed_before = await relays(api)
    desk_before = await sent_count(emulator, [desk_chat])
    customers_before = await sent_count(emulator, customer_chats)

    # Phase 2: the rest, both ways, in rounds over the tickets (each ticket's in order).
    def customer_says(i: int, n: int) -> dict[str, Any]:
        return {"bot_id": bot_id, "from": customer(i), "text": customer_text(i, n)}

    def agent_says(i: int, n: int) -> dict[str, Any]:
        return {
            "bot_id": bot_id,
            "from": agent(i % AGENTS),
            "chat": {"id": desk_chat},
            "message_thread_id": threads[i],
            "text": agent_text(i, n),
        }

    rounds = max(max(plan.customer_messages), max(plan.agent_messages))
    talk = [
        (i, says(i, n))
        for n in range(rounds)
        for i in range(plan.customers)
        for says, count, first in (
            (customer_says, plan.customer_messages, 1),
            (agent_says, plan.agent_messages, 0),
        )
        if first <= n < count[i]
    ]

    async def paced() -> None:
        """One writer, message k at k / rate: every ticket's messages in order."""
        start = time.monotonic()
        for k, (_, body) in enumerate(talk):
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
            await post_update(emulator, body)

    by_ticket: dict[int, list[dict[str, Any]]] = {}
    for i, body in talk:
        by_ticket.setdefault(i, []).append(body)
    queues = iter(by_ticket.values())

    async def at_once() -> None:
        """Writers as fast as the emulator takes them; a ticket's messages by one writer."""
        for bodies in queues:
            for body in bodies:
                await post_update(emulator, body)

    started = time.monotonic()
    possible_duplicates = 0
    writing = asyncio.gather(*([paced()] if rate > 0 else [at_once() for _ in range(WRITERS)]))
    for _ in range(kills):
        await asyncio.sleep(2.0)
        possible_duplicates += duplicate_logs(serve.log)
        serve.kill()
        await asyncio.to_thread(serve.start)
    await writing
    expected_topic = sum(plan.customer_messages) - plan.customers
    expected_customers = sum(plan.agent_messages)

    async def all_copied() -> bool:
        return (
            await sent_count(emulator, [desk_chat]) - desk_before >= expected_topic
            and await sent_count(emulator, customer_chats) - customers_before >= expected_customers
        )

    await until(all_copied, "every copy", timeout=RUN_TIMEOUT_SECONDS, every=0.25)
    talking = time.monotonic() - started

    lost = duplicated = out_of_order = 0
    in_topics = await texts_by_thread(emulator, desk_chat)
    for i in range(plan.customers):
        wanted = [customer_text(i, n) for n in range(plan.customer_messages[i])]
        got = [t for t in in_topics.get(threads[i], []) if t.startswith("c")]
        missing, doubled, ordered = compare(wanted, got)
        in_chat = (await texts_by_thread(emulator, customer_chats[i])).get(None, [])
        wanted_back = [agent_text(i, n) for n in range(plan.agent_messages[i])]
        missing_back, doubled_back, ordered_back = compare(
            wanted_back, [t for t in in_chat if t.startswith("a")]
        )
        lost += missing + missing_back
        duplicated += doubled + doubled_back
        out_of_order += 0 if ordered and ordered_back else 1
    flood = await call(emulator, "GET", "/_emulator/flood")
    # A killed server's histogram died with it: only a run without kills has phase 2's whole.
    relayed = None if kills else since(await relays(api), relayed_before)
    serve.stop()
    return Result(
        opening=opening,
        talking=talking,
        talked=len(talk),
        lost=lost,
        duplicated=duplicated,
        out_of_order=out_of_order,
        rejected=flood["rejected"],
        possible_duplicates=possible_duplicates + duplicate_logs(serve.log),
        latency={} if relayed is None else quantiles(relayed, (0.5, 0.9, 0.99)),
        buckets=relayed or [],
    )


def duplicate_logs(log: Path) -> int:
    """Sends tgrelay logged as possibly doubled so far (its metric dies with a killed process)."""
    return len(re.findall(DUPLICATE_LOG, log.read_text(errors="replace")))


@contextmanager
def database(db: str) -> Iterator[str | None]:
    if db != "postgres":
        yield None
        return
    url = asyncio.run(recreate_postgres_database(POSTGRES_DATABASE))
    try:
        yield url
    finally:
        asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))


def run(options: Options) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp,
        database(options.db) as url,
    ):
        workdir = Path(tmp)
        emulator_port, app_port = free_port(), free_port()
        data_dir = workdir / "data"
        data_dir.mkdir()
        env = serve_env(data_dir, emulator_port=emulator_port, app_port=app_port, database_url=url)
        env["TGRELAY_HEALTH_INTERVAL_SECONDS"] = "3600"
        pair = (
            TELEGRAM_LIMITS
            if options.limits == "telegram"
            else dict.fromkeys(TELEGRAM_LIMITS, UNBOUND)
        )
        env["TGRELAY_SEND_LIMIT_PER_CHAT"] = json.dumps(pair["per_chat"])
        env["TGRELAY_SEND_LIMIT_PER_GROUP"] = json.dumps(pair["per_group"])
        env["TGRELAY_SEND_LIMIT_PER_BOT"] = json.dumps(pair["per_bot"])
        tgrelay = [sys.executable, "-m", "tgrelay"]
        emulator_url, api_url = f"http://127.0.0.1:{emulator_port}", f"http://127.0.0.1:{app_port}"
        with process(
            [*tgrelay, "emulator", "--port", str(emulator_port)], env, workdir / "emulator.log"
        ):
            wait_http(f"{emulator_url}/_emulator/flood", timeout=STEP_TIMEOUT_SECONDS)
            api_key = create_workspace(tgrelay, env)
            serve = Serve(env, workdir / "serve.log", api_url)
            serve.start()
            try:
                return asyncio.run(drive_over_http(api_url, api_key, emulator_url, serve, options))
            finally:
                serve.stop()


async def drive_over_http(
    api_url: str, api_key: str, emulator_url: str, serve: Serve, options: Options
) -> Result:
    async with (
        httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        ) as api,
        httpx.AsyncClient(base_url=emulator_url, timeout=60) as emulator,
    ):
        return await drive(api, emulator, serve, options)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2000, help="each way, first ones included")
    parser.add_argument("--limits", choices=["none", "telegram"], default="none")
    parser.add_argument("--kills", type=int, default=0)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE,
        help="phase 2's messages per second, both ways together (0: as fast as taken)",
    )
    args = parser.parse_args()
    if args.customers < 1 or args.messages < args.customers:
        parser.error("--customers must be at least 1 and --messages at least --customers")
    options = Options(
        plan=Plan.of(args.customers, args.messages),
        db=args.db,
        limits=args.limits,
        kills=args.kills,
        rate=args.rate,
    )
    result = run(options)
    latency = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.latency.items()) or "n/a"
    print(
        f"{args.db:8} limits {args.limits}, {args.customers} customers, {args.messages} messages "
        f"each way at {'full speed' if args.rate == 0 else f'{args.rate:g}/s'}, {args.kills} "
        f"kills: topics for all in {result.opening:.1f} s; the talk {result.talking:.1f} s "
        f"({result.talked / result.talking:.1f} relays/s); "
        f"relay latency (stored → sent) {latency}; lost {result.lost}, duplicated "
        f"{result.duplicated} (possible duplicates counted {result.possible_duplicates}), "
        f"out of order {result.out_of_order} tickets; {result.rejected} 429s"
    )
    if result.buckets:
        total = result.buckets[-1][1]
        print(
            "relays sent within:",
            ", ".join(
                f"{bound:g} s {count / total:.1%}" for bound, count in result.buckets if count
            ),
        )


if __name__ == "__main__":
    main()
