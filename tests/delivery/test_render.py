"""Rendering: the shipped templates, Article 50 on every advertising message, errors naming file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.campaigns.candidates import Candidate
from engine.delivery.render import Renderer, check_template, law_violation
from engine.errors import RenderError
from engine.offers import issue_offer
from tests.delivery.conftest import NOW, TEMPLATES, campaign, context, lpoint

COUPON = {"type": "coupon", "amount_off": 5, "min_spend": 25}
MISSION = {"type": "stamp_mission", "stamps": 3, "days": 30, "min_basket": 10, "reward": {"amount_off": 10}}
TIERS = {"type": "subscription", "tiers": [{"name": "Silver", "min_monthly_spend": 100, "coupons": [COUPON]},
                                           {"name": "Gold", "min_monthly_spend": 300}]}
KO_MISSION = {**MISSION, "min_basket": 10000, "reward": {"amount_off": 5000}}
KO_TIERS = {"type": "subscription", "tiers": [{"name": "실버", "min_monthly_spend": 100000,
                                               "coupons": [{"amount_off": 3000}]}]}
MONTHLY = {"type": "schedule", "cron": "0 10 1 * *"}
EXAMPLES = [
    campaign(),
    campaign("cj_winback", trigger={"type": "lapse", "p_alive_below": 0.3}, offer=COUPON),
    campaign("cj_stamp_mission", channel="email", trigger={"type": "repurchase_due"}, offer=MISSION),
    campaign("cj_subscription", channel="email", trigger=MONTHLY, offer=TIERS),
    lpoint(),
    lpoint("lpoint_stamp_mission", offer=KO_MISSION),
    lpoint("lpoint_subscription", channel="email", trigger=MONTHLY, offer=KO_TIERS),
    campaign("consent_reconfirm", kind="transactional", channel="email", trigger=MONTHLY, offer=None),
    lpoint("consent_reconfirm", kind="transactional", channel="email", trigger=MONTHLY, offer=None),
]


def render(c, ctx=None, root: Path = TEMPLATES, category: str | None = "GROCERY", **extra):
    ctx = ctx or context()
    candidate = Candidate(c.name, ctx.customer_id, "GROCERY@2017-06-08", NOW, "due", category)
    return Renderer(root).render(c, ctx, issue_offer(c, ctx, candidate.key, NOW), candidate, NOW, extra)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda c: f"{c.template}.{c.language}")
def test_every_shipped_template_checks_and_renders_for_a_real_state(example) -> None:
    check_template(TEMPLATES, example)
    message = render(example)
    assert message.title and message.body
    assert law_violation(example, message.body) is None
    assert message.key == f"{example.name}|1001|GROCERY@2017-06-08" and message.data["key"] == message.key
    if example.offer is not None:
        assert message.data["offer.code"] in message.body


def test_a_korean_ad_starts_with_the_mark_and_sender_and_ends_with_free_opt_out() -> None:
    message = render(lpoint())
    lines = message.body.splitlines()
    assert lines[0] == "(광고) 롯데멤버스"
    assert lines[-1] == "무료수신거부 080-000-0000"
    assert "GROCERY" in message.body and "원" in message.body
    assert message.title.startswith("(광고)")


def test_the_opt_out_number_comes_from_the_renderer() -> None:
    c = lpoint()
    ctx = context()
    cand = Candidate(c.name, "1001", "o", NOW, "", "GROCERY")
    message = Renderer(TEMPLATES, opt_out="080-123-4567").render(c, ctx, issue_offer(c, ctx, cand.key, NOW), cand, NOW)
    assert message.body.endswith("무료수신거부 080-123-4567")


def _template(tmp_path: Path, name: str, body: str, title: str = "t") -> Path:
    path = tmp_path / name
    path.write_text(f"{{% block title %}}{title}{{% endblock %}}\n{{% block body %}}\n{body}\n{{% endblock %}}\n",
                    encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("body", "problem"), [
    ("롯데멤버스 쿠폰 도착\n무료수신거부 {{ opt_out }}", "must start with '(광고)'"),
    ("(광고) 다른회사\n쿠폰 도착\n무료수신거부 {{ opt_out }}", "followed by the sender '롯데멤버스'"),
    ("(광고) 롯데멤버스\n쿠폰 도착", "must end with the free opt-out line"),
    ("(광고) 롯데멤버스\n무료수신거부 {{ opt_out }}\n쿠폰 도착", "must end with the free opt-out line"),
    ("(광고) 롯데멤버스\n수신거부 080-000-0000", "must end with the free opt-out line"),
])
def test_a_korean_ad_breaking_article_50_is_refused_naming_the_file(tmp_path: Path, body: str, problem: str) -> None:
    root = _template(tmp_path, "lpoint_repurchase_coupon.ko.j2", body)
    with pytest.raises(RenderError, match=r"lpoint_repurchase_coupon\.ko\.j2: block body: .*" + re.escape(problem)):
        check_template(root, lpoint())
    with pytest.raises(RenderError, match=re.escape(problem)):
        render(lpoint(), root=root)


def test_a_transactional_korean_notice_needs_no_ad_mark(tmp_path: Path) -> None:
    root = _template(tmp_path, "notice.ko.j2", "수신동의 현황 안내")
    check_template(root, lpoint("notice", kind="transactional", offer=None))
    with pytest.raises(RenderError, match="must start with"):
        check_template(root, lpoint("notice", offer=None))


def test_an_english_ad_needs_an_unsubscribe_line_last(tmp_path: Path) -> None:
    root = _template(tmp_path, "ad.en.j2", "Buy now.\nUnsubscribe: {{ unsubscribe_url }}")
    check_template(root, campaign("ad"))
    root = _template(tmp_path, "ad.en.j2", "Unsubscribe: {{ unsubscribe_url }}\nBuy now.")
    with pytest.raises(RenderError, match=r"ad\.en\.j2: block body: an advertising body must end with an unsubscribe"):
        check_template(root, campaign("ad"))


@given(st.text(max_size=60))
def test_no_korean_ad_body_passes_without_the_mark_sender_and_opt_out(text: str) -> None:
    c = lpoint()
    passed = law_violation(c, text) is None
    stripped = text.strip()
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    assert passed == (stripped.startswith("(광고)") and stripped[4:].lstrip().startswith("롯데멤버스")
                      and bool(lines) and "무료수신거부" in lines[-1] and "080-000-0000" in lines[-1])
    assert law_violation(c, f"(광고) 롯데멤버스\n{text}\n무료수신거부 080-000-0000") is None


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    root = _template(tmp_path, "ad.en.j2", "line one\n{% if %}\nunsubscribe")
    with pytest.raises(RenderError, match=r"ad\.en\.j2:4: Expected an expression"):
        check_template(root, campaign("ad"))


def test_an_undefined_name_names_file_line_and_block(tmp_path: Path) -> None:
    root = _template(tmp_path, "ad.en.j2", "line one\nHello {{ scores.nickname }}\nunsubscribe")
    with pytest.raises(RenderError, match=r"ad\.en\.j2:4: block body: UndefinedError: .*nickname.*customer 1001"):
        render(campaign("ad"), root=root)


def test_the_sandbox_refuses_unsafe_attributes(tmp_path: Path) -> None:
    root = _template(tmp_path, "ad.en.j2", "{{ campaign.__class__.__subclasses__() }}\nunsubscribe")
    with pytest.raises(RenderError, match=r"ad\.en\.j2:\d+: block body: SecurityError"):
        render(campaign("ad"), root=root)


def test_a_missing_template_or_block_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"nothing\.en\.j2: no such template \(campaign nothing\)"):
        check_template(tmp_path, campaign("nothing"))
    (tmp_path / "half.en.j2").write_text("{% block title %}x{% endblock %}", encoding="utf-8")
    with pytest.raises(RenderError, match=r"half\.en\.j2: no \{% block body %\}"):
        check_template(tmp_path, campaign("half"))


def test_the_consent_notice_lists_what_the_customer_agreed_to() -> None:
    notice = lpoint("consent_reconfirm", kind="transactional", channel="email", trigger=MONTHLY, offer=None)
    consent = [{"channel": "push", "purpose": "advertising", "granted": True, "at": NOW},
               {"channel": "push", "purpose": "night", "granted": False, "at": NOW}]
    message = render(notice, consent=consent)
    assert "- push 광고: 동의 (2017년 6월 14일)" in message.body  # 03:00 UTC is still the 14th in Chicago
    assert "- push 야간 광고: 거부" in message.body
    assert "기록된 수신동의가 없습니다" in render(notice).body
