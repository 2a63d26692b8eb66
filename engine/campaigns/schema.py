"""A campaign as marketers write it in `campaigns/*.yaml`: the pydantic models are the contract.

Loading (YAML with line numbers, errors re-worded with file/line/field) lives in `engine.campaigns.files`;
this module only says what a valid campaign is. `Campaign.model_json_schema()` is what editors get.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.clock import zone_info
from engine.errors import ConfigError

Channel = Literal["push", "email", "wallet", "webhook", "file"]
CHANNELS: tuple[str, ...] = ("push", "email", "wallet", "webhook", "file")
Language = Literal["ko", "en"]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """Inclusive bounds; either may be left out."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def holds(self, value: float | None) -> bool:
        """Whether `value` is known and within the bounds."""
        if value is None:
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


class Affinity(_Strict):
    """A preference score (0..5) at least `min_preference` for `category`, or for any category when left out."""

    category: str | None = None
    min_preference: int = Field(default=3, ge=0, le=5)


class Audience(_Strict):
    """Who may receive the campaign: every condition given must hold (an empty audience is everyone)."""

    segments: list[str] = []  # scores output `segment`
    grades: list[str] = []  # scores output `grade`
    clv_12m: Range | None = None
    p_alive: Range | None = None
    expected_purchases: Range | None = None
    recency_days: Range | None = None  # days since the last purchase day, in the customer's zone
    frequency: Range | None = None  # purchase baskets
    monetary: Range | None = None  # spend net of returns, currency units
    affinity: Affinity | None = None
    profile: dict[str, list[str]] = {}  # profile field (sex, age_band, region, or an attribute) -> allowed values


class RepurchaseDue(_Strict):
    """A predicted next-purchase date arrives: for `category`, for any of the customer's `top_k` preferred
    categories, or (neither given) the customer-level `next_purchase.date`."""

    type: Literal["repurchase_due"]
    category: str | None = None
    top_k: int | None = Field(default=None, ge=1, le=20)
    lead_days: int = Field(default=0, ge=0, le=30)  # fire this many days before the predicted date
    window_days: int = Field(default=3, ge=0, le=60)  # a date more than this in the past never fires

    @model_validator(mode="after")
    def _one_scope(self) -> RepurchaseDue:
        if self.category is not None and self.top_k is not None:
            raise ValueError("give category or top_k, not both")
        return self


class EventTrigger(_Strict):
    """A purchase matching every condition given."""

    type: Literal["event"]
    first_purchase: bool = False
    min_basket: float | None = Field(default=None, ge=0)
    lpay: bool | None = None
    category: str | None = None  # a line in this top category


class Lapse(_Strict):
    """P(alive) below a bound, or recency beyond k times the customer's mean interval (at least one)."""

    type: Literal["lapse"]
    p_alive_below: float | None = Field(default=None, gt=0, lt=1)
    interval_multiple: float | None = Field(default=None, gt=0)
    window_days: int = Field(default=7, ge=0, le=60)  # lapsed longer than this ago: stale, never fires

    @model_validator(mode="after")
    def _some_condition(self) -> Lapse:
        if self.p_alive_below is None and self.interval_multiple is None:
            raise ValueError("give p_alive_below or interval_multiple")
        return self


class Schedule(_Strict):
    """A cron schedule (APScheduler's crontab syntax) in the campaign's zone or each customer's."""

    type: Literal["schedule"]
    cron: str
    zone: Literal["campaign", "customer"] = "campaign"
    window_hours: int = Field(default=24, ge=1, le=24 * 7)  # a fire time older than this never fires

    @field_validator("cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone=UTC)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression: {exc}") from None
        return value


Trigger = Annotated[RepurchaseDue | EventTrigger | Lapse | Schedule, Field(discriminator="type")]


class Scope(_Strict):
    """What a coupon applies to: products and/or top categories (both empty: the whole basket)."""

    products: list[str] = []
    categories: list[str] = []
    trigger_category: bool = False  # also the category the trigger named (a repurchase-due coupon's department)


class Coupon(_Strict):
    """Percent or amount off, above a minimum spend, within a scope, valid some days; one unique code per issue."""

    type: Literal["coupon"] = "coupon"
    percent_off: float | None = Field(default=None, gt=0, le=100)
    amount_off: float | None = Field(default=None, gt=0)
    max_discount: float | None = Field(default=None, gt=0)  # cap on a percent coupon's discount
    min_spend: float = Field(default=0, ge=0)
    scope: Scope = Scope()
    validity_days: int = Field(default=14, ge=1, le=366)
    code_prefix: str = Field(default="NDG", pattern=r"^[A-Z0-9]{1,8}$")
    # A reminder this many days before the last valid day while still unused: a follow-up message with its own key,
    # under the campaign's caps and consent, rendered from `reminder_template` (default: <template>_reminder).
    reminder_days: int | None = Field(default=None, ge=1, le=30)
    reminder_template: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_/-]*$")

    @model_validator(mode="after")
    def _one_discount(self) -> Coupon:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give exactly one of percent_off and amount_off")
        return self

    @property
    def face_value(self) -> float:
        """What one issued coupon can cost at most: the amount, or the percent of its cap (else its minimum)."""
        if self.amount_off is not None:
            return self.amount_off
        base = self.max_discount if self.max_discount is not None else self.min_spend * self.percent_off / 100
        return float(base)


class StampMission(_Strict):
    """Earn `stamps` purchases in the customer's top-`top_k` predicted categories within `days`, then a reward."""

    type: Literal["stamp_mission"]
    stamps: int = Field(ge=1, le=50)
    top_k: int = Field(default=3, ge=1, le=20)
    days: int = Field(ge=1, le=366)
    min_basket: float = Field(default=0, ge=0)  # a purchase earns a stamp from this spend in those categories
    reward: Coupon
    # After which endings a new round starts at once (same categories, a fresh deadline), up to `max_rounds`.
    recur: list[Literal["completed", "expired"]] = []
    max_rounds: int = Field(default=12, ge=1, le=120)

    @property
    def face_value(self) -> float:
        """The reward's face value."""
        return self.reward.face_value


class Tier(_Strict):
    """One subscription tier: from a monthly spend, its coupons, extra points and next month's fee."""

    name: str
    min_monthly_spend: float = Field(ge=0)
    coupons: list[Coupon] = []
    extra_points_percent: float = Field(default=0, ge=0, le=100)
    next_month_fee: float = Field(default=0, ge=0)


class Subscription(_Strict):
    """Tiers by monthly spend (ascending); the offer names the tier the customer's spend reaches."""

    type: Literal["subscription"]
    tiers: list[Tier] = Field(min_length=1)
    fee: float = Field(default=0, ge=0)  # a month's fee when last month's spend reached no tier
    free_months: int = Field(default=1, ge=0, le=12)  # months without a fee from the take-up
    churn_idle_months: int = Field(default=1, ge=1, le=12)  # this many months without a purchase: churned

    @field_validator("tiers")
    @classmethod
    def _ascending(cls, tiers: list[Tier]) -> list[Tier]:
        spends = [t.min_monthly_spend for t in tiers]
        if spends != sorted(spends) or len(set(spends)) != len(spends):
            raise ValueError(f"tiers must rise strictly by min_monthly_spend, got {spends}")
        return tiers

    @property
    def face_value(self) -> float:
        """The most a sign-up's coupons can cost: the highest tier's."""
        return max(sum(c.face_value for c in t.coupons) for t in self.tiers)


Offer = Annotated[Coupon | StampMission | Subscription, Field(discriminator="type")]


class Cap(_Strict):
    """At most `sends` messages per `days` calendar days in the customer's zone, for this campaign or a tag."""

    sends: int = Field(ge=0)
    days: int = Field(ge=1, le=30)
    tag: str | None = None  # None: this campaign's own sends; a tag: the sends of every campaign carrying it


class QuietHours(_Strict):
    """Customer-local hours in which the channel sends nothing (the message waits); may wrap midnight."""

    start: time
    end: time

    def covers(self, local: time) -> bool:
        """Whether the local time of day falls inside the quiet hours."""
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class Budget(_Strict):
    """The most the campaign's issued offers may add up to, in face value."""

    max_face_value: float = Field(gt=0)


class Campaign(_Strict):
    """One campaign rule."""

    name: Name
    description: str = ""
    kind: Literal["advertising", "transactional"] = "advertising"
    audience: Audience = Audience()
    trigger: Trigger
    offer: Offer | None = None
    channel: Channel
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9_/-]*$")  # templates/<template>.<language>.j2
    language: Language = "en"
    sender: str = Field(min_length=1)  # the advertiser's name, shown in the message
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    zone: str = "UTC"  # the campaign's zone: its start/end dates and a campaign-zone schedule
    priority: int = 0  # higher wins when several campaigns want one customer
    value: float = 0  # declared value of one message, the tie-break after priority
    tags: list[str] = []
    caps: list[Cap] = []
    quiet_hours: dict[Channel, QuietHours] = {}
    budget: Budget | None = None
    holdout: float = Field(default=10, ge=0, le=50)  # percent of the audience kept aside, never messaged
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    max_delay_hours: float = Field(default=72, gt=0)  # a message deferred longer is aborted

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone_info(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _window(self) -> Campaign:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start {self.start.isoformat()} is not before end {self.end.isoformat()}")
        return self

    def active(self, now: datetime) -> bool:
        """Whether `now` lies within the campaign's start/end."""
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)

    @property
    def face_value(self) -> float:
        """What one message's offer can cost (0 without an offer)."""
        return 0.0 if self.offer is None else self.offer.face_value

    @property
    def reminder_template(self) -> str | None:
        """The template of its coupon's (or mission reward's) expiry reminder, when one is asked for."""
        coupon = self.offer.reward if isinstance(self.offer, StampMission) else self.offer
        if not isinstance(coupon, Coupon) or coupon.reminder_days is None:
            return None
        return coupon.reminder_template or f"{self.template}_reminder"
