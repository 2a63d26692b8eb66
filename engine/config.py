"""Settings from the environment (prefix NUDGE_) or a `.env` file, validated by pydantic-settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.pipeline import DEFAULT_FUTURE_TOLERANCE
from engine.state import DEFAULT_NON_MERCHANDISE, StatePolicy


class Settings(BaseSettings):
    """Where nudge keeps its data and how the embedded runtime behaves."""

    model_config = SettingsConfigDict(env_prefix="NUDGE_", env_file=".env", extra="ignore")

    home: Path = Path(".nudge")
    db_url: str | None = None  # default: SQLite at <home>/nudge.db
    # The root of the model registry; default <home>/models.
    models_dir: Path = Field(default_factory=lambda data: Path(data["home"]) / "models")
    checkpoint_every: int = Field(default=20_000, gt=0)
    # An event dated more than this past the clock is a dead letter ("future-dated").
    future_tolerance_days: float = Field(default=DEFAULT_FUTURE_TOLERANCE.days, ge=0)
    cj_timezone: str = "UTC"  # Complete Journey's timestamps are naive; this is their zone
    lpoint_timezone: str = "Asia/Seoul"
    non_merchandise: frozenset[str] = DEFAULT_NON_MERCHANDISE
    # Stored purchase lines older than this behind the watermark are dropped, whole parts at a time; the models
    # fit on a year of lines.
    line_retention_days: float = Field(default=400.0, gt=0)
    # lead (campaign runtime):
    follow_poll_seconds: float = Field(default=1.0, gt=0)  # `nudge run --follow`: how often the file is re-read
    sender_name: str = "nudge"  # who the two-yearly consent notice is from
    notice_language: Literal["ko", "en"] = "en"  # the consent notice's template language
    # triggers: the event-time jobs (APScheduler crontab syntax: day of week 0 is Monday) and how late a fire
    # may still run; older ones are skipped, so a restored run never sweeps or refits late. A replay sees a fire
    # only at the next event's time, so the grace covers a night without purchases.
    sweep_cron: str = "0 0 * * *"  # re-score the changed customers, find what is due, judge, deliver
    refit_cron: str = "0 0 1 * *"
    deliver_cron: str = "0 * * * *"  # purchase-triggered candidates and deferred messages whose time came
    jobs_zone: str = "UTC"
    job_grace_hours: float = Field(default=26.0, gt=0)
    # the Kafka runtime (`nudge produce`, `nudge worker`, `nudge scheduler`):
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_topic: str = "purchases"  # its dead letters go to "<topic>.deadletter"
    kafka_group: str = "nudge"  # the workers' consumer group
    kafka_messages_topic: str = "messages"  # every message sent, keyed by its idempotency key
    worker_name: str | None = None  # static group membership: a restarted worker of this name gets its partitions
    # policy:
    # The global control group: this percent of customers (a stable hash) gets no advertising at all.
    control_percent: float = Field(default=5.0, ge=0, le=50)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL of the engine's database."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.home / 'nudge.db'}"

    @property
    def lines_dir(self) -> Path:
        """Where the line store keeps its parts."""
        return self.home / "lines"

    @property
    def line_retention(self) -> timedelta:
        """`line_retention_days` as a timedelta."""
        return timedelta(days=self.line_retention_days)

    @property
    def future_tolerance(self) -> timedelta:
        """`future_tolerance_days` as a timedelta."""
        return timedelta(days=self.future_tolerance_days)

    @property
    def policy(self) -> StatePolicy:
        """The state policy these settings describe."""
        return StatePolicy(non_merchandise=frozenset(self.non_merchandise))

    # files:
    campaigns_dir: Path = Path("campaigns")  # the running campaign set: the *.yaml files directly in it
    templates_dir: Path = Path("templates")  # campaign templates, <template>.<language>.j2
    # delivery:
    # Article 50's free opt-out instruction ends every Korean advertising message: a free number or a link.
    opt_out_ko: str = "080-000-0000"
    unsubscribe_url: str = "https://example.invalid/unsubscribe"  # an English advertising message's last line
    push_url: str | None = None  # FCM HTTP v1 messages:send endpoint (or a receiver speaking its JSON)
    webhook_url: str | None = None
    smtp_host: str | None = None  # email is configured when this is set
    smtp_port: int = Field(default=25, gt=0, lt=65536)
    email_sender: str = "nudge@example.invalid"
    outbox_path: Path | None = None  # default: <home>/outbox.jsonl
    delivery_attempts: int = Field(default=4, ge=1, le=20)  # tries per message before it is dead-lettered
    delivery_backoff_seconds: float = Field(default=0.5, ge=0)  # the first wait; it doubles each retry
    delivery_backoff_max_seconds: float = Field(default=30.0, ge=0)
    delivery_timeout_seconds: float = Field(default=10.0, gt=0)  # per HTTP request or SMTP session

    # the API (`nudge serve`, engine/api): writes (POST, DELETE) need the write token; customer-level reads need the
    # read token (or the write token) unless api_read_auth is off. No write token: every write is refused.
    api_write_token: SecretStr | None = None
    api_read_token: SecretStr | None = None
    api_read_auth: bool = True
    api_cors_origins: list[str] = []  # none: no CORS headers at all, so browsers keep other origins out
    api_max_body_bytes: int = Field(default=1_048_576, gt=0)  # a larger request body is refused with 413
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, gt=0, lt=65536)
    # erasure: the key of the one-way token that replaces an erased customer's id in the ledger and the offers, and
    # names them in the suppression list; default: a random key kept in <home>/erasure.key (created on first use)
    erasure_secret: SecretStr | None = None

    @property
    def outbox_file(self) -> Path:
        """The file outbox channel's JSON Lines file."""
        return self.outbox_path if self.outbox_path is not None else self.home / "outbox.jsonl"
