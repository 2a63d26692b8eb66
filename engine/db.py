"""The engine's database: customer state, profiles, checkpoints, dead letters, line-store parts and scores
(SQLAlchemy Core).

SQLite by default (the embedded runtime); any SQLAlchemy URL, PostgreSQL included, works the same.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError


class UtcDateTime(TypeDecorator):
    """A time stored as UTC and read back UTC-aware on every database (SQLite keeps the clock time only)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """UTC on the way in, so every dialect stores the same clock time."""
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """UTC-aware on the way out."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

customer_state = Table(
    "customer_state", metadata,
    Column("customer_id", String, primary_key=True),
    Column("state", LargeBinary, nullable=False),
)

customer_profile = Table(
    "customer_profile", metadata,
    Column("customer_id", String, primary_key=True),
    Column("profile", Text, nullable=False),  # CustomerProfile as JSON
)

checkpoint = Table(
    "checkpoint", metadata,
    Column("source", String, primary_key=True),
    Column("position", BigInteger, nullable=False),  # the next record to read (a Kafka offset: past 2**31)
    Column("watermark", UtcDateTime),
    Column("counters", Text, nullable=False),  # JSON of the cumulative counters
    Column("complete", Boolean, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

dead_letter = Table(
    "dead_letter", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("where", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    UniqueConstraint("source", "position", name="dead_letter_once"),
)

# The committed parts of the line store (engine/store/lines.py): a part file not listed here was written after
# the last committed checkpoint. Dropped parts stay listed, so a refold knows the lines no longer start at 0.
line_part = Table(
    "line_part", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # a Kafka partition's parts: above 2**40
    Column("source", String, nullable=False),
    Column("purchases", Integer, nullable=False),
    Column("lines", Integer, nullable=False),
    Column("first_time", UtcDateTime, nullable=False),
    Column("last_time", UtcDateTime, nullable=False),
    Column("dropped", Boolean, nullable=False),
    Column("written_at", UtcDateTime, nullable=False),
)


# The events the Kafka workers accepted (engine/runtime/stream.py), saved with their partition's checkpoint: what
# the scheduler replays on the stream's clock (engine/runtime/feed.py). `order_time` is the partition's clock when
# the event arrived (its event time, or the later watermark a late event found), so it never decreases along a
# partition; profiles that came before any purchase have none.
stream_feed = Table(
    "stream_feed", metadata,
    Column("topic", String, primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("offset", BigInteger, primary_key=True, autoincrement=False),
    Column("order_time", UtcDateTime),
    Column("event_id", String, nullable=False),  # ties on order_time break on it, then partition and offset
    Column("raw", Text, nullable=False),  # the message value as it came
)

# Who holds each Kafka partition: its taker's claim (engine/store/checkpoints.py `claim`). A checkpoint saved under
# an older claim is refused, so a worker the group replaced while it stalled writes nothing over its successor.
partition_owner = Table(
    "partition_owner", metadata,
    Column("source", String, primary_key=True),
    Column("epoch", Integer, nullable=False),
)

# The scheduler's own record (in its replica's database) of what of the feed it has released to its replay: each
# release takes, per partition, the offsets after the last release's up to `high`, so the replay's positions keep
# their meaning however late a partition's rows arrive.
feed_release = Table(
    "feed_release", metadata,
    Column("topic", String, primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("high", BigInteger, nullable=False),  # the last offset released
    Column("events", Integer, nullable=False),  # rows the release holds over all its partitions (same on each)
)


# What the stores were written with: "state_schema" (engine.state.STATE_SCHEMA) and "libraries" (JSON of
# engine.versions.library_versions()). A table of its own so `create_all` adds it to an older database.
store_meta = Table(
    "store_meta", metadata,
    Column("key", String, primary_key=True),
    Column("value", Text, nullable=False),
)

# Model outputs by name (engine.models.outputs), one row per customer × category ("" at customer level) × output.
# A number goes in `number`; a string, date (ISO) or list (JSON) in `text`.
score = Table(
    "score", metadata,
    Column("customer_id", String, primary_key=True),
    Column("category", String, primary_key=True),
    Column("output", String, primary_key=True),
    Column("model", String, nullable=False),
    Column("version", String, nullable=False),
    Column("number", Float),
    Column("text", Text),
    Column("as_of", UtcDateTime, nullable=False),  # the time the value was scored at
    Index("score_model_customer", "model", "customer_id"),
)

# The version each model's scores come from: written with the model's rows, in the same transaction.
score_version = Table(
    "score_version", metadata,
    Column("model", String, primary_key=True),
    Column("version", String, nullable=False),
    Column("as_of", UtcDateTime, nullable=False),  # the time the refit scored everyone at
    Column("rows", Integer, nullable=False),
    Column("written_at", UtcDateTime, nullable=False),
)


def connect(url: str) -> Engine:
    """An engine for `url` with the tables created; SQLite files get their folder and WAL mode."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
    _create_tables(engine)
    return engine


def _create_tables(engine: Engine, attempts: int = 20) -> None:
    """`create_all`, again when another process creating the same tables at the same moment made it fail (a fresh
    database opened by several workers at once: CREATE TABLE races on either dialect)."""
    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except (IntegrityError, OperationalError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


def upsert(engine: Engine, table: Table, key: str):
    """An INSERT that replaces the row with the same `key`, in the engine's dialect."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
    return stmt.on_conflict_do_update(index_elements=[key], set_=others)


def insert_ignoring_duplicates(engine: Engine, table: Table):
    """An INSERT that skips rows violating a unique constraint (dead letters re-read after a crash)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table).on_conflict_do_nothing()


def insert_new(conn: Connection, table: Table, rows: list[dict]) -> int:
    """`insert_ignoring_duplicates` of `rows`: how many were new. Counting the table before and after would count
    other writers' rows too; an executemany's rowcount is -1 on psycopg unless kept before the cursor is reused."""
    if not rows:
        return 0
    stmt = insert_ignoring_duplicates(conn.engine, table).execution_options(preserve_rowcount=True)
    return conn.execute(stmt, rows).rowcount



# --- files tables ---
# The running campaign set (engine.campaigns.running): the last good version of each campaign, so a restart
# while a file is bad keeps running what ran before. One row per campaign name; `file` says which folder's set.
campaign_running = Table(
    "campaign_running", metadata,
    Column("name", String, primary_key=True),
    Column("file", Text, nullable=False),
    Column("hash", String, nullable=False),  # sha256 of the file's bytes
    Column("campaign", Text, nullable=False),  # the validated Campaign as JSON
    Column("since", UtcDateTime, nullable=False),
)

# The kill switch: a row per paused campaign. Resuming deletes it; the audit keeps the history.
campaign_pause = Table(
    "campaign_pause", metadata,
    Column("name", String, primary_key=True),
    Column("by", String, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

# Every change to the running set: loaded / changed / rejected / retired / paused / resumed.
campaign_audit = Table(
    "campaign_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("campaign", String, nullable=False),
    Column("action", String, nullable=False),
    Column("by", String, nullable=False),
    Column("hash", String),  # the file's hash for file actions; the running version's for pause/resume
    Column("file", Text),
    Column("detail", Text, nullable=False),
    Index("campaign_audit_campaign", "campaign", "id"),
)
# --- end files tables ---
# --- policy tables ---
# Consent changes per customer × channel × purpose ("advertising" or "night"), append-only: the consent in
# effect at a time is the latest change at or before it. Re-importing the same file adds nothing.
consent_change = Table(
    "consent_change", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String, nullable=False),
    Column("channel", String, nullable=False),
    Column("purpose", String, nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("source", String, nullable=False),
    UniqueConstraint("customer_id", "channel", "purpose", "at", "granted", name="consent_change_once"),
    Index("consent_change_at", "at"),
)
# --- end policy tables ---
# --- delivery tables ---
# The delivery ledger and outbox (engine/delivery/ledger.py): one row per candidate's idempotency key, its
# verdict from arbitration and then from delivery. Queued rows whose not_before has come are what is sent.
delivery_ledger = Table(
    "delivery_ledger", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String, nullable=False),
    Column("campaign", String, nullable=False),
    Column("customer_id", String, nullable=False),
    Column("occurrence", String, nullable=False),
    Column("category", String),
    Column("candidate_at", UtcDateTime, nullable=False),  # when the trigger became true
    Column("reason", Text, nullable=False),
    Column("verdict", String, nullable=False),  # a candidates.Verdict value
    Column("decided_at", UtcDateTime, nullable=False),
    Column("not_before", UtcDateTime),
    Column("deferred", String),
    Column("detail", Text, nullable=False),
    Column("channel", String, nullable=False),
    Column("offer_code", String),
    Column("face_value", Float),
    Column("provider_id", String),  # what the channel answered: a push message name, a Message-ID, ...
    Column("sent_at", UtcDateTime),
    Column("attempts", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("key", name="delivery_ledger_key"),
    Index("delivery_ledger_due", "verdict", "not_before"),
    Index("delivery_ledger_campaign", "campaign", "verdict"),
)

# The coupon wallet channel: the offers issued to each customer, once per idempotency key.
wallet_offer = Table(
    "wallet_offer", metadata,
    Column("key", String, primary_key=True),
    Column("customer_id", String, nullable=False),
    Column("campaign", String, nullable=False),
    Column("code", String),
    Column("kind", String),
    Column("face_value", Float),
    Column("currency", String),
    Column("valid_until", UtcDateTime),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("data", Text, nullable=False),  # the message's data as JSON
    Column("issued_at", UtcDateTime, nullable=False),
    Index("wallet_offer_customer", "customer_id"),
)
# --- end delivery tables ---

# Offers after they are issued (engine.offers.book): one row per code, its status moved by purchases and time.
offer = Table(
    "offer", metadata,
    Column("code", String, primary_key=True),
    Column("kind", String, nullable=False),  # coupon, reward, tier_coupon, stamp_mission, subscription
    Column("campaign", String, nullable=False),
    Column("customer_id", String, nullable=False),
    Column("key", String, nullable=False),  # the ledger key of the message that issued it (or led to it)
    Column("parent", String),  # the mission a reward completes, the subscription a tier coupon belongs to
    Column("issued_at", UtcDateTime, nullable=False),
    Column("valid_until", UtcDateTime, nullable=False),
    Column("face_value", Float, nullable=False),
    Column("currency", String, nullable=False),
    Column("zone", String, nullable=False),
    Column("status", String, nullable=False),
    Column("closed_at", UtcDateTime),
    Column("cost", Float, nullable=False),  # a redeemed coupon's discount
    Column("terms", Text, nullable=False),  # the coupon, mission or subscription as issued (JSON)
    Column("progress", Text, nullable=False),  # categories, stamps, round, tier, month... (JSON)
    Index("offer_customer", "customer_id"),
    Index("offer_campaign", "campaign", "status"),
)

# What happened to an offer, once per (code, ref): a redemption, a stamp, a month's tier, points, an expiry.
offer_step = Table(
    "offer_step", metadata,
    Column("code", String, primary_key=True),
    Column("ref", String, primary_key=True),  # the purchase's event id, "month:2017-12", "expired", ...
    Column("kind", String, nullable=False),  # redeemed, stamp, completed, reward, expired, taken_up, month, ...
    Column("campaign", String, nullable=False),
    Column("customer_id", String, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("amount", Float, nullable=False),  # discount, points, fee, spend — by kind
    Column("detail", Text, nullable=False),
    Index("offer_step_campaign", "campaign", "kind"),
)

# --- erasure tables ---
# Customers erased on request (engine/erasure.py), by the one-way token of their id alone: the id is gone, yet
# arbitration and delivery still know the customer and never message them again (engine.campaigns.suppression).
suppression = Table(
    "suppression", metadata,
    Column("token", String, primary_key=True),
    Column("at", UtcDateTime, nullable=False),  # when the erasure was done (wall clock)
    Column("reason", Text, nullable=False),
)
# --- end erasure tables ---
