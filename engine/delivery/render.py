"""Rendering a campaign's message from its Jinja2 template, and the advertising law every message must meet.

A template is `templates/<campaign.template>.<campaign.language>.j2` with a `title` and a `body` block (see
templates/README.md). The environment is sandboxed with `StrictUndefined`, so a template touching anything unsafe
or undefined fails loudly; `RenderError` names the template file and line.

The law: Korea's Information and Communications Network Act, Article 50. A Korean advertising message starts
with "(광고)" and the sender's name and ends with a free opt-out instruction ("무료수신거부" and the number or
link); an English one ends with an unsubscribe line. A message that does not is never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError, pass_context
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from engine.campaigns.candidates import Candidate, CustomerContext
from engine.campaigns.schema import Campaign
from engine.clock import zone_info
from engine.config import Settings
from engine.delivery.message import Message
from engine.errors import NudgeError, RenderError
from engine.events import CustomerProfile, Line, Purchase
from engine.models.outputs import VOCABULARY
from engine.offers.issue import IssuedOffer, issue_offer, money
from engine.state import apply

AD_MARK = "(광고)"
OPT_OUT_KO = "무료수신거부"
UNSUBSCRIBE = "unsubscribe"
BLOCKS = ("title", "body")
DEFAULT_OPT_OUT = "080-000-0000"
DEFAULT_UNSUBSCRIBE_URL = "https://example.invalid/unsubscribe"


def law_violation(campaign: Campaign, body: str, opt_out: str = DEFAULT_OPT_OUT) -> str | None:
    """Why a rendered advertising body breaks Article 50 (ko) or lacks an unsubscribe line (en); None if fine."""
    if campaign.kind != "advertising":
        return None
    text = body.strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if campaign.language == "ko":
        head = text[: len(AD_MARK)]
        if head != AD_MARK:
            return f"a Korean advertising body must start with {AD_MARK!r} (got {text[:20]!r})"
        after = text[len(AD_MARK):].lstrip()
        if not after.startswith(campaign.sender):
            return f"{AD_MARK!r} must be followed by the sender {campaign.sender!r} (got {after[:20]!r})"
        if OPT_OUT_KO not in last or opt_out not in last:
            return (f"a Korean advertising body must end with the free opt-out line {OPT_OUT_KO!r} and "
                    f"{opt_out!r} (got last line {last!r})")
        return None
    if UNSUBSCRIBE not in last.lower():
        return f"an advertising body must end with an unsubscribe line (got last line {last!r})"
    return None


def _display_date(value: date | datetime, zone: str, language: str) -> str:
    if isinstance(value, datetime):
        value = value.astimezone(zone_info(zone)).date()
    if language == "ko":
        return f"{value.year}년 {value.month}월 {value.day}일"
    return f"{value:%b} {value.day}, {value.year}"


@pass_context
def _money_filter(context: Any, amount: float) -> str:
    """`{{ x | money }}`: an amount in the campaign's currency and language."""
    return money(amount, context["currency"], context["language"])


@pass_context
def _date_filter(context: Any, value: date | datetime) -> str:
    """`{{ d | date }}`: a date (a time: its local date in the customer's zone) in the campaign's language."""
    return _display_date(value, context["zone"], context["language"])


def _error_line(exc: BaseException, filename: str | None, template: Any) -> int | None:
    """The template line an error in rendering came from: the deepest traceback frame in the template's code."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line


class Renderer:
    """Renders campaign messages from the templates under `root`, enforcing the advertising law."""

    def __init__(self, root: Path, opt_out: str = DEFAULT_OPT_OUT,
                 unsubscribe_url: str = DEFAULT_UNSUBSCRIBE_URL) -> None:
        self.root = Path(root)
        self.opt_out = opt_out
        self.unsubscribe_url = unsubscribe_url
        self.env = SandboxedEnvironment(loader=FileSystemLoader(str(self.root)), undefined=StrictUndefined,
                                        autoescape=False, trim_blocks=True, lstrip_blocks=True)
        self.env.filters["money"] = _money_filter
        self.env.filters["date"] = _date_filter

    @classmethod
    def from_settings(cls, settings: Settings) -> Renderer:
        """A renderer for the templates, opt-out number and unsubscribe link the settings name."""
        return cls(settings.templates_dir, settings.opt_out_ko, settings.unsubscribe_url)

    def path(self, campaign: Campaign) -> str:
        """The template's name under the root: `<template>.<language>.j2`."""
        return f"{campaign.template}.{campaign.language}.j2"

    def render(self, campaign: Campaign, ctx: CustomerContext, offer: IssuedOffer | None, candidate: Candidate,
               now: datetime, extra: Mapping[str, Any] | None = None) -> Message:
        """The message for one candidate; RenderError (naming template file and line) when it cannot be made.

        `extra` adds variables (e.g. `consent`, the customer's consent records for the two-yearly notice).
        """
        name = self.path(campaign)
        where = f"{self.root / name}"
        try:
            template = self.env.get_template(name)
        except TemplateNotFound:
            raise RenderError(f"{where}: no such template (campaign {campaign.name})") from None
        except TemplateSyntaxError as exc:
            raise RenderError(f"{where}:{exc.lineno}: {exc.message}") from None
        missing = [b for b in BLOCKS if b not in template.blocks]
        if missing:
            raise RenderError(f"{where}: no {{% block {missing[0]} %}} (a template defines title and body)")
        zone = ctx.zone
        variables = self._variables(campaign, ctx, offer, candidate, now, zone)
        variables.update(extra or {})
        parts: dict[str, str] = {}
        for block in BLOCKS:
            context = template.new_context(variables)
            try:
                parts[block] = _tidy("".join(template.blocks[block](context)))
            except (TemplateError, SecurityError, NudgeError, ArithmeticError, TypeError, ValueError,
                    KeyError, AttributeError) as exc:
                line = _error_line(exc, template.filename, template)
                at = f"{where}:{line}" if line is not None else where
                reason = getattr(exc, "message", None) or str(exc)
                raise RenderError(f"{at}: block {block}: {type(exc).__name__}: {reason} "
                                  f"(customer {ctx.customer_id})") from None
        if not parts["body"]:
            raise RenderError(f"{where}: block body: renders empty (customer {ctx.customer_id})")
        problem = law_violation(campaign, parts["body"], self.opt_out)
        if problem:
            raise RenderError(f"{where}: block body: {problem}")
        data = {"key": candidate.key, "campaign": campaign.name, "customer_id": ctx.customer_id,
                "occurrence": candidate.occurrence}
        if candidate.category is not None:
            data["category"] = candidate.category
        if offer is not None:
            data.update(offer.data())
        return Message(candidate.key, campaign.name, ctx.customer_id, campaign.channel, campaign.language,
                       parts["title"], parts["body"], data, campaign.kind, campaign.sender, now)

    def _variables(self, campaign: Campaign, ctx: CustomerContext, offer: IssuedOffer | None,
                   candidate: Candidate, now: datetime, zone: str) -> dict[str, Any]:
        language, currency = campaign.language, campaign.currency
        local = now.astimezone(zone_info(zone))
        return {
            "campaign": campaign, "sender": campaign.sender, "customer": ctx, "customer_id": ctx.customer_id,
            "state": ctx.state, "profile": ctx.profile, "scores": ctx.scores, "categories": ctx.categories,
            "recommended": list(ctx.scores.get("recommended") or []), "offer": offer, "candidate": candidate,
            "category": candidate.category, "now": local, "today": local.date(),
            "opt_out": self.opt_out, "unsubscribe_url": self.unsubscribe_url, "zone": zone,
            "language": language, "currency": currency, "consent": (),
        }


def _tidy(text: str) -> str:
    """Trailing spaces off each line, at most one blank line in a row, no blank lines around."""
    out: list[str] = []
    for line in text.strip().splitlines():
        line = line.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


SAMPLE_NOW = datetime(2017, 6, 15, 3, 0, tzinfo=UTC)


def sample_context(campaign: Campaign, now: datetime = SAMPLE_NOW) -> CustomerContext:
    """A made-up customer with every output of the scores vocabulary, for checking a template up front."""
    categories = [c for c in (getattr(campaign.trigger, "category", None),) if c]
    offer = campaign.offer
    scope = getattr(getattr(offer, "scope", None), "categories", None) or []
    categories += [c for c in scope if c not in categories]
    categories += [c for c in ("SAMPLE A", "SAMPLE B", "SAMPLE C") if len(categories) < 3]
    state = None
    for i in range(4):
        lines = tuple(Line(f"P{i}{j}", (c,), 1, 12.5) for j, c in enumerate(categories))
        purchase = Purchase(event_id=f"sample-{i}", customer_id="sample", event_time=now - timedelta(days=7 * (4 - i)),
                            lines=lines)
        state = apply(state, purchase)
    profile = CustomerProfile(customer_id="sample", time_zone=campaign.zone)
    by_type: dict[str, Any] = {"str": "sample", "float": 0.75, "int": 4, "date": (now + timedelta(days=3)).date(),
                               "list[str]": ["P00", "P01", "P02"]}
    special = {"segment": "loyal", "grade": "Gold"}
    scores = {o.name: special.get(o.name, by_type[o.type]) for o in VOCABULARY if o.level == "customer"}
    per_category = {o.name: by_type[o.type] for o in VOCABULARY if o.level == "category"}
    return CustomerContext("sample", state, profile, scores, {c: dict(per_category) for c in categories})


def check_template(root: Path, campaign: Campaign, opt_out: str = DEFAULT_OPT_OUT,
                   shown: Campaign | None = None) -> None:
    """Render the campaign's template (or `shown`'s, with the campaign's offer: a coupon reminder) for a sample
    customer: RenderError on syntax, undefined names or the law."""
    ctx = sample_context(campaign)
    trigger = campaign.trigger
    scoped = getattr(trigger, "category", None) is not None or getattr(trigger, "top_k", None) is not None
    category = next(iter(ctx.categories)) if scoped else None  # as the trigger's candidates carry it
    candidate = Candidate(campaign.name, ctx.customer_id, f"{category}@2017-06-08", SAMPLE_NOW, "sample", category)
    offer = issue_offer(campaign, ctx, candidate.key, SAMPLE_NOW, category)
    Renderer(root, opt_out).render(shown or campaign, ctx, offer, candidate, SAMPLE_NOW)


def check_templates(root: Path, campaigns: Mapping[str, Campaign]) -> dict[str, str]:
    """`check_template` for each campaign: the errors by campaign name (empty when all render)."""
    errors: dict[str, str] = {}
    for name, campaign in campaigns.items():
        try:
            check_template(root, campaign)
        except RenderError as exc:
            errors[name] = str(exc)
    return errors
