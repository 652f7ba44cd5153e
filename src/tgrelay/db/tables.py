"""The schema, declared once for SQLite and PostgreSQL; Alembic migrations must match it."""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)

from tgrelay.db.types import BigId, Timestamp

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(40), primary_key=True),  # "ws_" + random
    Column("name", String(200), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),  # the key's public prefix part, "tgr_" + id
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("secret_hash", String(64), nullable=False),  # sha256 hex of the secret part
    Column("name", String(200), nullable=False),  # the holder's label, e.g. "CI deploys"
    Column("scope", String(16), nullable=False),  # admin | read (workspaces.models.KeyScope)
    Column("created_at", Timestamp, nullable=False),
    # Written at most once a minute per key (workspaces.keys.USE_RECORD_SECONDS).
    Column("last_used_at", Timestamp),
    Column("revoked_at", Timestamp),
)

# Web UI sign-ins: the browser's cookie holds a random id; only its hash is stored.
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 hex of the cookie's id
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("api_key_id", String(40), ForeignKey("api_keys.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),  # hidden field of every form
    Column("created_at", Timestamp, nullable=False),  # absolute expiry counts from here
    # Idle expiry counts from here; refreshed at most once a minute.
    Column("last_seen_at", Timestamp, nullable=False),
)

bots = Table(
    "bots",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # Telegram's bot id
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("username", String(64), nullable=False),
    Column("first_name", String(128), nullable=False),
    Column("token_ciphertext", Text, nullable=False),  # Fernet token of the bot token
    Column("token_fingerprint", String(32), nullable=False),  # "123456:…abcd"
    Column("mode", String(16), nullable=False),  # webhook | polling
    Column("status", String(32), nullable=False),
    Column("conflict_kind", String(16)),  # foreign | empty, when status is webhook_conflict
    Column("secret_generation", Integer, nullable=False, server_default=text("1")),
    # The previous generation stays valid until this instant after a rotation.
    Column("previous_secret_valid_until", Timestamp),
    Column("last_error_message", Text),  # from getWebhookInfo
    Column("last_error_at", Timestamp),
    Column("last_checked_at", Timestamp),
    # When the current workspace's hold began: it sees only updates received since then. A
    # reconnect by the same workspace keeps it; a connect by another one moves it.
    Column("connected_since", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

updates = Table(
    "updates",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("bot_id", BigInteger, nullable=False),
    Column("update_id", BigInteger, nullable=False),
    Column("kind", String(40), nullable=False),  # the Update's payload field, e.g. "message"
    Column("chat_id", BigInteger),  # null for updates without a chat (inline queries, polls)
    Column("source", String(16), nullable=False),  # webhook | polling
    Column("payload", Text, nullable=False),  # the raw JSON as received
    Column("received_at", Timestamp, nullable=False),
    # Set by processing when the update was kept from the domain handlers: throttled |
    # duplicate (inbox/screening.py); null when it was handled, or is yet to be.
    Column("disposition", String(16)),
    # "chat_id:message_id:edit_date" of the message it carried, on the first update that
    # carried it, while TGRELAY_INBOUND_DEDUPLICATE is on: later copies find it here.
    Column("message_key", String(64)),
    # The W3C trace id (32 hex digits) given when it was stored (tgrelay/tracing.py).
    Column("trace_id", String(32)),
    UniqueConstraint("bot_id", "update_id"),
    Index(
        "ix_updates_bot_id_message_key",
        "bot_id",
        "message_key",
        unique=True,
        sqlite_where=text("message_key IS NOT NULL"),
        postgresql_where=text("message_key IS NOT NULL"),
    ),
)

# The current window of TGRELAY_INBOUND_CHAT_LIMIT per chat (inbox/chat_limit.py): one row
# per chat, written in the process_update transaction, so the count survives restarts.
chat_windows = Table(
    "chat_windows",
    metadata,
    Column("bot_id", BigInteger, primary_key=True, autoincrement=False),
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("started_at", Timestamp, nullable=False),  # received_at of its first update
    Column("count", Integer, nullable=False),  # updates received in it, throttled ones too
    Column("announced", Boolean, nullable=False),  # chat.throttled was emitted for it
    # Retention walks it to find the windows that have ended (retention/prune.py).
    Index("ix_chat_windows_started_at", "started_at"),
)

# The part of a partial index's condition both backends accept word for word: SQLite's
# planner uses a partial index only when the query repeats its WHERE terms literally.
JOBS_READY_WHERE = "state = 'pending' AND blocked = 0"

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),  # handler name, e.g. "process_update"
    # Which workers claim it: a lane of workers serves one queue (e.g. "webhooks").
    Column("queue", String(32), nullable=False, server_default=text("'default'")),
    Column("payload", Text, nullable=False),  # JSON arguments for the handler
    # Jobs sharing a key run one at a time, oldest first; null = no ordering constraint.
    Column("ordering_key", String(128)),
    # The job enqueued before this one with the same key (queue/chains.py): this one may
    # run once that one is finished.
    Column("after_id", BigInteger),
    # 1 while the job waits for `after_id` to finish: it then leaves ix_jobs_ready, so
    # claims never walk past a key's backlog. The predecessor's end sets it back to 0.
    Column("blocked", Integer, nullable=False, server_default=text("0")),
    Column("subject_id", BigInteger),  # the row this job is about (e.g. updates.id)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", Timestamp, nullable=False),
    Column("locked_by", String(64)),
    Column("lease_expires_at", Timestamp),
    Column("last_error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
    # The trace of the update that caused it (inherited from the job that enqueued it).
    Column("trace_id", String(32)),
    Index("ix_jobs_state_run_at", "state", "run_at"),
    Index("ix_jobs_kind_subject_id", "kind", "subject_id"),
    # What claims walk: pending jobs free to run, by queue, oldest due first. Future-dated
    # jobs (timers, retries) sit past the `run_at <= now` end and cost a claim nothing.
    Index(
        "ix_jobs_ready",
        "queue",
        "run_at",
        "id",
        sqlite_where=text(JOBS_READY_WHERE),
        postgresql_where=text(JOBS_READY_WHERE),
    ),
    # A finished job's successors; it grows at its end only, as ids do.
    Index(
        "ix_jobs_after_id",
        "after_id",
        sqlite_where=text("after_id IS NOT NULL"),
        postgresql_where=text("after_id IS NOT NULL"),
    ),
)

# The newest job of each ordering key: a new job of the key follows it (jobs.after_id). One
# row per key, so it grows with the number of chats, not with the backlog.
job_keys = Table(
    "job_keys",
    metadata,
    Column("ordering_key", String(128), primary_key=True),
    Column("last_job_id", BigInteger, nullable=False),
    # The newest job before the upsert that last moved the key on: PostgreSQL 15 returns
    # only new values from an upsert, and the PostgreSQL intake links through it
    # (inbox/postgres_writer.py). Meaningful only in that upsert's RETURNING.
    Column("previous_job_id", BigInteger, nullable=False, server_default="0"),
)

telegram_chats = Table(
    "telegram_chats",
    metadata,
    Column("bot_id", BigInteger, primary_key=True, autoincrement=False),
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(16), nullable=False),
    Column("title", String(256)),
    Column("username", String(64)),
    Column("updated_at", Timestamp, nullable=False),
)

telegram_users = Table(
    "telegram_users",
    metadata,
    Column("bot_id", BigInteger, primary_key=True, autoincrement=False),
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("is_bot", Boolean, nullable=False),
    Column("first_name", String(256), nullable=False),
    Column("last_name", String(256)),
    Column("username", String(64)),
    Column("language_code", String(16)),
    Column("updated_at", Timestamp, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),  # e.g. "poller:123456"
    Column("holder", String(64), nullable=False),
    Column("expires_at", Timestamp, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", String(40), index=True),
    Column("bot_id", BigInteger),
    Column("action", String(64), nullable=False),  # e.g. "bot.status_changed", "intake.rejected"
    Column("actor", String(64), nullable=False),  # "api_key:tgr_…", "system", "telegram"
    Column("detail", Text, nullable=False),  # JSON, never a secret
    Column("remote_addr", String(64)),
    Column("created_at", Timestamp, nullable=False),
    # How many occurrences the row stands for: 1, or a tally of rejected webhook requests.
    Column("count", Integer, nullable=False, server_default=text("1")),
    # Set on tallied rows only (a digest of action, bot, reason, address and minute): a later
    # flush of the same tally adds to the row's count instead of writing another row.
    Column("aggregate_key", String(32)),
    UniqueConstraint("aggregate_key"),
)

# --- groups: connect sessions, group connections, notifications ---------------------------

connect_sessions = Table(
    "connect_sessions",
    metadata,
    Column("id", String(40), primary_key=True),  # "cs_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("bot_id", BigInteger, nullable=False),
    # The deep-link token; null once used, replaced by a newer session, expired or cancelled.
    Column("token", String(64), unique=True),
    Column("state", String(24), nullable=False),
    Column("topic", String(128)),  # forum topic to create for alerts, when the group is a forum
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    # Phase 1: the Telegram user who sent /start <token> in a private chat.
    Column("user_id", BigInteger),
    Column("user_first_name", String(256)),
    Column("user_username", String(64)),
    Column("verified_at", Timestamp),
    # Phase 2 accepts only additions of the bot that happened at or after this instant.
    Column("group_started_at", Timestamp),
    Column("connection_id", String(40)),
    Index("ix_connect_sessions_workspace_id_bot_id", "workspace_id", "bot_id"),
    Index("ix_connect_sessions_bot_id_user_id", "bot_id", "user_id"),
)

group_connections = Table(
    "group_connections",
    metadata,
    Column("id", String(40), primary_key=True),  # "conn_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("bot_id", BigInteger, nullable=False),
    Column("chat_id", BigInteger, nullable=False),  # rewritten when the group migrates
    Column("chat_type", String(16), nullable=False),  # group | supergroup
    Column("title", String(256)),
    Column("is_forum", Boolean, nullable=False, server_default=text("false")),
    Column("topic", String(128)),  # the forum topic's name, when alerts go to one
    Column("message_thread_id", BigInteger),  # that topic's thread, once created
    Column("status", String(16), nullable=False),
    Column("status_reason", Text),
    Column("connected_by_user_id", BigInteger),
    Column("session_id", String(40)),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),  # DELETE keeps the row for its notifications' history
    Index("ix_group_connections_bot_id_chat_id", "bot_id", "chat_id"),
)

# A basic group's id after it became a supergroup: what it was, what it is now.
chat_aliases = Table(
    "chat_aliases",
    metadata,
    Column("bot_id", BigInteger, primary_key=True, autoincrement=False),
    Column("old_chat_id", BigInteger, primary_key=True, autoincrement=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(40), primary_key=True),  # "ntf_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("connection_id", String(40), nullable=False, index=True),
    Column("idempotency_key", String(128)),
    Column("text", Text, nullable=False),
    Column("parse_mode", String(16)),
    Column("parts", Text, nullable=False),  # JSON list: the text split to Telegram's limit
    Column("status", String(16), nullable=False),  # queued | sent | failed
    Column("message_ids", Text, nullable=False),  # JSON list, one id per part sent so far
    # Parts handed to Telegram; more than message_ids means a send may have happened unseen.
    Column("parts_attempted", Integer, nullable=False, server_default=text("0")),
    Column("error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
    UniqueConstraint("workspace_id", "idempotency_key"),
)

# --- events: the event log, customers' endpoints, deliveries and their attempts -----------

events = Table(
    "events",
    metadata,
    Column("id", String(40), primary_key=True),  # "evt_" + random; the webhook-id header
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("type", String(64), nullable=False),  # e.g. "message.received" (events.catalog)
    Column("body", Text, nullable=False),  # the JSON sent, byte for byte, on every attempt
    Column("created_at", Timestamp, nullable=False),
    # The trace of the update that caused it; its deliveries send it as `traceparent`.
    Column("trace_id", String(32)),
    Index("ix_events_workspace_id_created_at", "workspace_id", "created_at"),
)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", String(40), primary_key=True),  # "ep_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("description", String(500)),
    Column("event_types", Text),  # JSON list of subscribed types; null = every type
    # JSON {type: version}: the schema versions pinned; null = the latest of every type.
    Column("event_versions", Text),
    Column("status", String(16), nullable=False),  # enabled | disabled
    Column("disabled_reason", Text),
    Column("secret_ciphertext", Text, nullable=False),  # Fernet token of the whsec_ secret
    # After a rotation the previous secret keeps signing until this instant.
    Column("previous_secret_ciphertext", Text),
    Column("previous_secret_expires_at", Timestamp),
    # JSON [[ciphertext, expires_at ISO], …]: secrets rotated out before the previous one,
    # each still signing until its own overlap ends.
    Column("earlier_secrets", Text),
    # Circuit breaker (tgrelay.breaker), shared by every worker process.
    Column("breaker_state", String(16), nullable=False),
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("breaker_opened_at", Timestamp),
    Column("breaker_retry_at", Timestamp),
    Column("breaker_open_count", Integer, nullable=False, server_default=text("0")),
    # First failure of the current unbroken run of failures; null after a success.
    Column("failing_since", Timestamp),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),  # DELETE keeps the row for its deliveries' history
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),  # shown as "dlv_<id>"
    Column("workspace_id", String(40), nullable=False),
    Column("endpoint_id", String(40), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | dead_letter
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    # Attempts in the current run of the schedule; a retry or replay starts a new run.
    Column("schedule_attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", Timestamp),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("delivered_at", Timestamp),
    # The body this endpoint receives when it pinned an older version of the type (rendered
    # at emit, so every attempt sends the same bytes); null: the event's own body.
    Column("body", Text),
    UniqueConstraint("event_id", "endpoint_id"),
    Index("ix_deliveries_endpoint_id_status_id", "endpoint_id", "status", "id"),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, nullable=False, index=True),
    Column("started_at", Timestamp, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer),  # null when no HTTP answer came (timeout, refused, …)
    Column("response_body", Text),  # the first 2 KiB of the answer
    Column("error", Text),  # why it failed; null on success
    Column("succeeded", Boolean, nullable=False),
)

# --- support: desks, agents, tickets, their messages and history, canned replies ----------

# A bot whose private chats open tickets, and the forum supergroup where they are answered.
support_desks = Table(
    "support_desks",
    metadata,
    Column("id", String(40), primary_key=True),  # "dsk_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("bot_id", BigInteger, nullable=False),
    Column("connection_id", String(40), nullable=False),  # the forum's group connection
    Column("name", String(200), nullable=False),
    Column("assignment", String(16), nullable=False),  # support.models.Assignment
    Column("reopen_window_seconds", Integer, nullable=False),
    Column("greeting_text", Text),  # sent to the customer when a ticket opens; null: none
    Column("closing_text", Text),  # sent to the customer when a ticket is resolved; null: none
    # Search score above which an auto_answer article answers a new ticket; null: never.
    Column("kb_auto_answer_threshold", Float),
    # How long the customer has to say whether the auto-answer helped before agents take over.
    Column("kb_answer_wait_seconds", Integer, nullable=False, server_default=text("600")),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("deleted_at", Timestamp),  # DELETE keeps the row for its tickets' history
    # A bot serves at most one live desk: its private chats' tickets go to one place.
    Index(
        "ux_support_desks_live_bot_id",
        "bot_id",
        unique=True,
        sqlite_where=text("deleted_at IS NULL"),
        postgresql_where=text("deleted_at IS NULL"),
    ),
)

# Who answers: a Telegram user of a desk group, per workspace. Seen agents are recorded on
# their first message in a ticket's topic; PUT /v1/support/agents/{id} names and enables them.
support_agents = Table(
    "support_agents",
    metadata,
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), primary_key=True),
    Column("telegram_user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("username", String(64)),  # Telegram @username, as last seen (for /assign @name)
    Column("external_id", String(200)),  # the team's own id for the agent
    Column("capacity", Integer),  # open tickets round robin may give them; null: no limit
    Column("active", Boolean, nullable=False),  # takes round-robin assignments
    Column("last_assigned_at", Timestamp),  # round robin gives the next ticket to the longest idle
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# The last ticket number given per workspace (UPDATE … +1 serializes concurrent opens).
support_counters = Table(
    "support_counters",
    metadata,
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), primary_key=True),
    Column("last_number", Integer, nullable=False),
)

tickets = Table(
    "tickets",
    metadata,
    Column("id", String(40), primary_key=True),  # "tkt_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("number", Integer, nullable=False),  # per workspace, from 1
    Column("desk_id", String(40), nullable=False),
    Column("bot_id", BigInteger, nullable=False),
    Column("customer_chat_id", BigInteger, nullable=False),  # the private chat with the bot
    Column("customer_id", BigInteger, nullable=False),  # the customer's Telegram user id
    # JSON {first_name, last_name, username, language_code} as Telegram last showed them.
    Column("customer", Text, nullable=False),
    Column("subject", String(200), nullable=False),  # the first words of the first message
    Column("status", String(16), nullable=False),  # support.models.TicketStatus
    Column("assignee_id", BigInteger),  # an agent's telegram_user_id
    Column("topic_chat_id", BigInteger, nullable=False),  # the desk's forum when it opened
    Column("topic_thread_id", BigInteger),  # its forum topic, once created
    Column("header_message_id", BigInteger),  # the topic's first message, edited in place
    Column("header_version", Integer, nullable=False, server_default=text("0")),
    Column("resolution_note", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("first_response_at", Timestamp),
    Column("resolved_at", Timestamp),
    Column("closed_at", Timestamp),
    # Its channel: null, the bot's own private chat; else the Telegram Business connection
    # whose account's chat with the customer it lives in (support_business_connections.id).
    Column("business_connection_id", String(128)),
    UniqueConstraint("workspace_id", "number"),
    Index(
        "ix_tickets_bot_id_customer_chat_id_created_at", "bot_id", "customer_chat_id", "created_at"
    ),
    Index("ix_tickets_topic_chat_id_topic_thread_id", "topic_chat_id", "topic_thread_id"),
    Index("ix_tickets_workspace_id_status_created_at", "workspace_id", "status", "created_at"),
)

# One message of a ticket in both chats: the customer's private chat and the ticket's topic.
# A relayed message has both ids (the original's and its copy's), so replies and edits on
# either side find the other; a note has only its topic id.
ticket_messages = Table(
    "ticket_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", String(40), nullable=False),
    Column("direction", String(16), nullable=False),  # customer | agent | note (models.Direction)
    Column("source", String(16), nullable=False),  # telegram | api
    Column("author_id", BigInteger),  # the Telegram user who wrote it; null for the API
    Column("kind", String(16), nullable=False),  # text | photo | document | … (what was sent)
    Column("text", Text),  # the text or caption as it reads now
    Column("customer_message_id", BigInteger),  # in the customer's private chat
    Column("topic_message_id", BigInteger),  # in the ticket's forum topic
    Column("relay_status", String(16), nullable=False),  # models.RelayStatus
    Column("relay_error", Text),  # why the relay failed
    Column("idempotency_key", String(128)),  # POST /v1/tickets/{id}/messages
    Column("created_at", Timestamp, nullable=False),
    Column("edited_at", Timestamp),
    UniqueConstraint("ticket_id", "idempotency_key"),
    Index("ix_ticket_messages_ticket_id_customer_message_id", "ticket_id", "customer_message_id"),
    Index("ix_ticket_messages_ticket_id_topic_message_id", "ticket_id", "topic_message_id"),
)

# Every earlier version of an edited message's text, oldest first.
ticket_message_edits = Table(
    "ticket_message_edits",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", BigInteger, nullable=False, index=True),  # ticket_messages.id
    Column("text", Text),  # the text as it read before this edit
    Column("written_at", Timestamp, nullable=False),  # when that version was written
    Column("replaced_at", Timestamp, nullable=False),  # when the edit replaced it
)

# What happened to a ticket, in order: statuses and assignments (SLA clocks read this).
ticket_changes = Table(
    "ticket_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", String(40), nullable=False, index=True),
    Column("field", String(16), nullable=False),  # status | assignee
    Column("previous", String(64)),
    Column("value", String(64)),
    Column(
        "changed_by", String(64), nullable=False
    ),  # "agent:<id>", "customer", "api:<key>", "system"
    Column("note", Text),
    Column("at", Timestamp, nullable=False),
)

# Canned replies: a name agents type (`/s <name>`) and a sandboxed Jinja2 template.
support_snippets = Table(
    "support_snippets",
    metadata,
    Column("id", String(40), primary_key=True),  # "snp_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

# The knowledge base: articles agents send from a ticket's topic, and auto-answers.
support_articles = Table(
    "support_articles",
    metadata,
    Column("id", String(40), primary_key=True),  # "art_" + doc_id in hex
    # The search index's integer key (FTS5's rowid): stable, unlike SQLite's implicit rowid,
    # which VACUUM may renumber in a table without an INTEGER PRIMARY KEY.
    Column("doc_id", BigInteger, nullable=False, unique=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("tags", Text, nullable=False),  # JSON list of strings
    Column("language", String(16)),  # an IETF tag's primary subtag, e.g. "en"; null: any
    Column("auto_answer", Boolean, nullable=False),  # may answer a new ticket by itself
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# A ticket answered by an article as it opened, and what the customer made of it.
support_auto_answers = Table(
    "support_auto_answers",
    metadata,
    Column("ticket_id", String(40), primary_key=True),
    Column("article_id", String(40), nullable=False),  # no FK: the article may be deleted
    Column("title", String(200), nullable=False),  # the article's title as it was sent
    Column("score", Float, nullable=False),
    Column("outcome", String(16), nullable=False),  # support.models.AutoAnswerOutcome
    Column("asked_at", Timestamp, nullable=False),
    Column("settled_at", Timestamp),  # when the customer answered, or the wait ran out
)

# Full-text search over support_articles with each database's own engine, made by the
# migration 0017 and, for tests' create_all, by these DDL events (the same statements).
# SQLite: an external-content FTS5 table kept in step by triggers; PostgreSQL: a generated
# tsvector column and its GIN index. The schema comparison leaves these objects out
# (SEARCH_OBJECTS); tests/db/test_migrations.py checks they exist.
ARTICLES_FTS = "support_articles_fts"
FTS5_SHADOWS = ("data", "idx", "docsize", "config")
SEARCH_VECTOR = "search_vector"
SEARCH_INDEX = "ix_support_articles_search_vector"
SEARCH_VIEW = "support_articles_search"
SEARCH_OBJECTS = frozenset(
    {ARTICLES_FTS, SEARCH_VIEW, *(f"{ARTICLES_FTS}_{shadow}" for shadow in FTS5_SHADOWS)}
    | {SEARCH_VECTOR, SEARCH_INDEX}
)
# The FTS5 table indexes the workspace, language ('0': none) and auto_answer too, so that one
# MATCH filters and ranks, and only the top rows are joined back (see support.kb_store).
# Its content is the view, which shows the values exactly as indexed ('rebuild' agrees).
_INDEXED = "title, body, workspace_id, language, auto_answer"
_NEW = "new.doc_id, new.title, new.body, new.workspace_id, coalesce(new.language, '0'), "
_OLD = "old.doc_id, old.title, old.body, old.workspace_id, coalesce(old.language, '0'), "
SQLITE_SEARCH_DDL = (
    "CREATE VIEW support_articles_search AS SELECT doc_id, title, body, workspace_id, "
    "coalesce(language, '0') AS language, auto_answer FROM support_articles",
    "CREATE VIRTUAL TABLE support_articles_fts USING fts5("
    + _INDEXED
    + ", content='support_articles_search', content_rowid='doc_id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER support_articles_fts_insert AFTER INSERT ON support_articles BEGIN "
    "INSERT INTO support_articles_fts(rowid, " + _INDEXED + ") "
    "VALUES (" + _NEW + "new.auto_answer); END",
    "CREATE TRIGGER support_articles_fts_delete AFTER DELETE ON support_articles BEGIN "
    "INSERT INTO support_articles_fts(support_articles_fts, rowid, " + _INDEXED + ") "
    "VALUES ('delete', " + _OLD + "old.auto_answer); END",
    "CREATE TRIGGER support_articles_fts_update AFTER UPDATE ON support_articles BEGIN "
    "INSERT INTO support_articles_fts(support_articles_fts, rowid, " + _INDEXED + ") "
    "VALUES ('delete', " + _OLD + "old.auto_answer); "
    "INSERT INTO support_articles_fts(rowid, " + _INDEXED + ") "
    "VALUES (" + _NEW + "new.auto_answer); END",
)
POSTGRES_SEARCH_DDL = (
    "ALTER TABLE support_articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(setweight(to_tsvector('english', title), 'A') || "
    "setweight(to_tsvector('english', body), 'B')) STORED",
    "CREATE INDEX ix_support_articles_search_vector ON support_articles USING gin (search_vector)",
)


def _after_create(statement: str, dialect: str) -> None:
    ddl = DDL(statement)  # type: ignore[no-untyped-call]  # SQLAlchemy leaves DDL() untyped
    event.listen(support_articles, "after_create", ddl.execute_if(dialect=dialect))


for _statement in SQLITE_SEARCH_DDL:
    _after_create(_statement, "sqlite")
for _statement in POSTGRES_SEARCH_DDL:
    _after_create(_statement, "postgresql")


def in_declared_schema(name: str | None, type_: str, _parents: object) -> bool:
    """Alembic's include_name: everything but the search objects (SEARCH_OBJECTS), which
    the declared tables cannot express in a dialect-neutral way."""
    return name not in SEARCH_OBJECTS


# A desk's SLA policy (issue 20): targets, business hours, pause statuses and the escalation
# ladder, as the API validated them (support.sla_policy reads it back).
support_sla_policies = Table(
    "support_sla_policies",
    metadata,
    Column("desk_id", String(40), ForeignKey("support_desks.id"), primary_key=True),
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("policy", Text, nullable=False),  # JSON, the PUT body's shape
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# A metric of a ticket that passed its due time unmet, recorded once per run (a run is known
# by its due time) by the support_sla_check timer.
ticket_sla_breaches = Table(
    "ticket_sla_breaches",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", String(40), nullable=False),
    Column("metric", String(32), nullable=False),  # first_response | next_response | resolution
    Column("due_at", Timestamp, nullable=False),
    Column("breached_at", Timestamp, nullable=False),  # = due_at (the breach is at the due time)
    Column("recorded_at", Timestamp, nullable=False),  # when the timer saw it
    UniqueConstraint("ticket_id", "metric", "due_at"),
)

# An escalation step fired for one run of a metric: a step fires once per run.
ticket_sla_escalations = Table(
    "ticket_sla_escalations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("ticket_id", String(40), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("due_at", Timestamp, nullable=False),
    Column("step", Integer, nullable=False),  # its index in the policy's escalation list
    Column("fired_at", Timestamp, nullable=False),
    UniqueConstraint("ticket_id", "metric", "due_at", "step"),
)

# The one live SLA timer of a ticket: the support_sla_check job queued for `wake_at`. A job
# whose wake_at is no longer this row's is stale (a later change re-planned it) and does
# nothing, so changes do not pile up timers.
ticket_sla_timers = Table(
    "ticket_sla_timers",
    metadata,
    Column("ticket_id", String(40), primary_key=True),
    Column("wake_at", Timestamp, nullable=False),
)

# A desk bot's Telegram Business connections: an account that connected the bot, its rights
# and state as the last business_connection update (or a refused send) told.
support_business_connections = Table(
    "support_business_connections",
    metadata,
    Column("id", String(128), primary_key=True),  # Telegram's business_connection_id
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("bot_id", BigInteger, nullable=False, index=True),
    Column("user_id", BigInteger, nullable=False),  # the business account's Telegram user id
    Column("user", Text, nullable=False),  # JSON {first_name, last_name, username}
    Column("can_reply", Boolean, nullable=False),
    Column("is_enabled", Boolean, nullable=False),
    Column("state", String(16), nullable=False),  # support.models.ConnectionState
    Column("connected_at", Timestamp, nullable=False),  # Telegram's date of the connection
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# --- conversations (issue 21) ---------------------------------------------------------------

# One version of a flow: the document as posted, never changed once stored (a conversation
# runs the version it started with). Posting a flow's name again stores the next version.
flows = Table(
    "flows",
    metadata,
    Column("id", String(40), primary_key=True),  # "flw_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("version", Integer, nullable=False),  # 1, 2, … per (workspace, name)
    Column("document", Text, nullable=False),  # JSON, valid against the published schema
    Column("trigger_kind", String(16), nullable=False),  # command | deep_link | callback | api
    Column("trigger_value", String(256)),  # the command, start parameter or callback data
    Column("created_at", Timestamp, nullable=False),
    Column("disabled_at", Timestamp),  # no new conversations; running ones go on
    UniqueConstraint("workspace_id", "name", "version"),
    Index("ix_flows_trigger", "workspace_id", "trigger_kind", "trigger_value"),
)

# A conversation: one run of a flow version with one user in one chat. `state` is the pure
# engine's state as JSON; status and step_id repeat it for queries and the unique index.
conversations = Table(
    "conversations",
    metadata,
    Column("id", String(40), primary_key=True),  # "cnv_" + random
    Column("workspace_id", String(40), ForeignKey("workspaces.id"), nullable=False),
    Column("flow_id", String(40), ForeignKey("flows.id"), nullable=False),
    Column("flow_name", String(100), nullable=False),  # lists filter by name without a join
    Column("bot_id", BigInteger, nullable=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),  # active | calling | completed | abandoned
    Column("step_id", String(64)),  # the step it waits at; null once ended
    Column("state", Text, nullable=False),
    Column("end_reason", String(16)),  # abandoned: timeout | cancel | failed
    Column("started_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp),
    # One live conversation per (bot, chat, user): a second start must find the first.
    Index(
        "ux_conversations_live_participant",
        "bot_id",
        "chat_id",
        "user_id",
        unique=True,
        sqlite_where=text("ended_at IS NULL"),
        postgresql_where=text("ended_at IS NULL"),
    ),
    Index("ix_conversations_workspace_started", "workspace_id", "started_at"),
)

# Every move of a conversation, in order: the history `GET /v1/conversations/{id}` shows.
conversation_transitions = Table(
    "conversation_transitions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "conversation_id", String(40), ForeignKey("conversations.id"), nullable=False, index=True
    ),
    Column("from_step", String(64)),  # null: the conversation started
    Column("to_step", String(64)),  # null: the conversation ended
    Column("input_summary", Text),  # what moved it; a sensitive step's value masked
    Column("at", Timestamp, nullable=False),
)
