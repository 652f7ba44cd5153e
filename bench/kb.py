"""Benchmark the knowledge base's search: 10,000 articles, a few hundred customer questions.

In one process, with tgrelay's own code and no server: a database brought to HEAD by the
migrations (a SQLite file, or PostgreSQL with --db postgres), one workspace, N articles
written in batches, then Q questions searched through `support.kb.search_on` as a new
ticket's suggestions search (limit 3, the customer's language), each on its own connection
checkout as the handler's. Prints the insert rate and the search's p50/p90/p99/max.

The articles are made from a vocabulary of support topics (products, actions, problems), so
words repeat across articles as in a real help centre; the questions are customers' first
messages written from the same vocabulary plus filler and words no article has.

    .venv/bin/python bench/kb.py                       # 10,000 articles, 400 questions, SQLite
    .venv/bin/python bench/kb.py --db postgres
    .venv/bin/python bench/kb.py --articles 1000 --questions 100

Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servers import recreate_postgres_database
from tgrelay.db import migrate
from tgrelay.db.engine import Database
from tgrelay.settings import async_database_url
from tgrelay.support import kb, kb_store
from tgrelay.workspaces import service as workspaces

POSTGRES_DATABASE = "tgrelay_bench_kb"
BATCH = 500
SEED = 20
_PRODUCTS = (
    "account password login invoice billing subscription refund order delivery parcel "
    "shipping card payment app android iphone desktop browser email notification export "
    "import report dashboard api webhook team invite workspace plan trial coupon address "
    "tracking return exchange warranty battery screen camera bluetooth wifi sync backup"
)
PRODUCTS = _PRODUCTS.split()
_ACTIONS = (
    "reset change cancel update delete restore download upload connect disconnect enable "
    "disable verify confirm track return request renew upgrade downgrade transfer share"
)
ACTIONS = _ACTIONS.split()
_PROBLEMS = (
    "not working failed error missing slow crash stuck declined expired locked wrong "
    "duplicate late damaged empty blank frozen denied invalid unknown"
)
PROBLEMS = _PROBLEMS.split()
_FILLER = (
    "please help since yesterday again still urgent thanks hello could would really "
    "somebody anyone today morning week"
)
FILLER = _FILLER.split()
_UNKNOWN = "zebra quasar tangerine obelisk marmalade"
UNKNOWN = _UNKNOWN.split()
LANGUAGES = ("en", "en", "en", "de", "fr", None)


def article(rng: random.Random, n: int) -> dict[str, Any]:
    product, other = rng.sample(PRODUCTS, 2)
    action, problem = rng.choice(ACTIONS), rng.choice(PROBLEMS)
    title = f"How to {action} your {product} ({n})"
    sentences = [
        f"If your {product} is {problem}, first {action} it from the settings page.",
        f"You can also {rng.choice(ACTIONS)} the {other} linked to it.",
        f"Still {rng.choice(PROBLEMS)}? Contact us with your {rng.choice(PRODUCTS)} number.",
        " ".join(rng.choices(PRODUCTS + ACTIONS + PROBLEMS, k=rng.randint(20, 60))),
    ]
    return {"title": title, "body": " ".join(sentences), "language": rng.choice(LANGUAGES)}


def question(rng: random.Random) -> str:
    words = [rng.choice(FILLER), "my", rng.choice(PRODUCTS), "is", rng.choice(PROBLEMS)]
    words += ["I", "tried", "to", rng.choice(ACTIONS), "it", rng.choice(FILLER)]
    if rng.random() < 0.2:
        words.append(rng.choice(UNKNOWN))
    if rng.random() < 0.3:
        words += ["and", "my", rng.choice(PRODUCTS), rng.choice(PROBLEMS)]
    return " ".join(words)


async def run(url: str, articles: int, questions: int) -> None:
    await migrate.upgrade(url)
    db = Database(url)
    now = datetime.now(UTC)
    workspace, _ = await workspaces.create_workspace(db, "bench", now=now)
    rng = random.Random(SEED)
    started = time.perf_counter()
    for first in range(0, articles, BATCH):
        rows = []
        for n in range(first, min(articles, first + BATCH)):
            doc_id = rng.getrandbits(62)
            rows.append(
                {
                    **article(rng, n),
                    "id": f"art_{doc_id:016x}",
                    "doc_id": doc_id,
                    "workspace_id": workspace.id,
                    "tags": [],
                    "auto_answer": n % 10 == 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        async with db.transaction() as conn:
            await kb_store.add_articles(conn, rows)
    inserted = time.perf_counter() - started
    asked = [question(rng) for _ in range(questions)]
    for text in asked[:20]:  # warm the caches as a running server's would be
        await _search(db, workspace.id, text)
    timings, found = [], 0
    for text in asked:
        began = time.perf_counter()
        hits = await _search(db, workspace.id, text)
        timings.append((time.perf_counter() - began) * 1000)
        found += bool(hits)
    await db.dispose()
    q = statistics.quantiles(timings, n=100)
    print(f"database: {url.split('://')[0]}")
    print(f"articles: {articles} inserted in {inserted:.1f} s ({articles / inserted:,.0f}/s)")
    print(f"questions: {questions}, {found} with a match")
    print(f"search ms: p50 {q[49]:.2f}  p90 {q[89]:.2f}  p99 {q[98]:.2f}  max {max(timings):.2f}")


async def _search(db: Database, workspace_id: str, text: str) -> list[Any]:
    async with db.engine.connect() as conn:
        return await kb.search_on(conn, workspace_id, text, limit=3, language="en")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--questions", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "postgres":
            url = async_database_url(asyncio.run(recreate_postgres_database(POSTGRES_DATABASE)))
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'kb.db'}"
        asyncio.run(run(url, args.articles, args.questions))
        if args.db == "postgres":
            asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))


if __name__ == "__main__":
    main()
