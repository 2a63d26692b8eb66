"""Campaign files: the examples are valid, and every error names its file, line, field and value."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaigns.files import check_dir, load_campaign, schema_json
from engine.campaigns.schema import Campaign, Coupon, StampMission, Subscription
from engine.errors import CampaignError, ConfigError
from tests.campaigns.conftest import CAMPAIGNS, EXAMPLE_DIRS, TEMPLATES, example_files, real_templates_present

GOOD = """\
name: spring
trigger:
  type: repurchase_due
  top_k: 3
channel: push
template: spring
sender: Shop
quiet_hours:
  push:
    start: 21:00
    end: 08:00
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(CampaignError) as caught:
        load_campaign(path)
    return caught.value.lines


def test_examples_are_valid_and_cover_every_offer_for_both_data_sets() -> None:
    campaigns = {p: load_campaign(p) for p in example_files()}
    assert len(campaigns) == 7
    for path, campaign in campaigns.items():
        assert campaign.name == path.stem and campaign.template == campaign.name
        first = path.read_text(encoding="utf-8").splitlines()[0]
        schema = first.removeprefix("# yaml-language-server: $schema=")
        assert schema != first and (path.parent / schema).resolve() == CAMPAIGNS / "campaign.schema.json"
    offers = {(c.currency, c.language, type(c.offer)) for c in campaigns.values()}
    for kind in (Coupon, StampMission, Subscription):
        assert ("USD", "en", kind) in offers and ("KRW", "ko", kind) in offers
    lpoint = [c for p, c in campaigns.items() if p.parent.name == "lpoint"]
    assert lpoint and all(c.zone == "Asia/Seoul" and c.sender in ("롯데멤버스", "롯데마트") for c in lpoint)
    assert any(c.caps for c in campaigns.values()) and any(c.quiet_hours for c in campaigns.values())
    by_name = {c.name: c for c in campaigns.values()}
    assert by_name["cj_repurchase_coupon"].trigger.top_k == 3 and by_name["cj_repurchase_coupon"].priority == 20
    assert by_name["cj_winback"].priority < 20 and by_name["cj_winback"].budget is not None
    tiers = [t.min_monthly_spend for t in by_name["lpoint_subscription"].offer.tiers]
    assert tiers == [100_000, 200_000, 300_000, 500_000, 1_000_000]


def test_examples_name_real_complete_journey_departments(cj_tables) -> None:
    departments = set(cj_tables["products"]["department"].dropna())
    for path in example_files():
        campaign = load_campaign(path)
        if campaign.currency != "USD":
            continue
        named = set(campaign.offer.scope.categories) if isinstance(campaign.offer, Coupon) else set()
        if campaign.audience.affinity is not None and campaign.audience.affinity.category:
            named.add(campaign.audience.affinity.category)
        assert named <= departments, (path, named - departments)


def test_schema_file_is_the_exported_schema() -> None:
    assert (CAMPAIGNS / "campaign.schema.json").read_text(encoding="utf-8") == schema_json(), \
        "run: nudge campaigns schema --out campaigns/campaign.schema.json"
    assert json.loads(schema_json())["properties"]["trigger"]["discriminator"]["propertyName"] == "type"


def test_times_of_day_stay_times_and_only_true_false_are_booleans(tmp_path: Path) -> None:
    text = GOOD + "audience:\n  profile:\n    region: [no, on, off, yes]\n"
    campaign = load_campaign(write(tmp_path, "spring.yaml", text))
    quiet = campaign.quiet_hours["push"]
    assert (quiet.start.hour, quiet.start.minute, quiet.end.hour) == (21, 0, 8)  # YAML 1.1 would read 1260 s
    assert campaign.audience.profile == {"region": ["no", "on", "off", "yes"]}


def test_every_error_names_file_line_field_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "spring.yaml", """\
name: spring
trigger:
  type: repurchase_due
  top_k: 0
  windw_days: 3
channel: sms
template: spring
sender: Shop
caps:
  - {sends: 1, days: 7}
  - sends: many
    days: 7
offer:
  type: coupon
  percent_off: 10
  amount_off: 2
holdout: 60
""")
    assert errors_of(path) == [
        f"{path}:4: trigger.top_k: input should be greater than or equal to 1 (got 0)",
        f"{path}:5: trigger.windw_days: unknown field (did you mean 'window_days'?)",
        f"{path}:6: channel: input should be 'push', 'email', 'wallet', 'webhook' or 'file' (got 'sms')",
        f"{path}:11: caps[1].sends: input should be a valid integer, unable to parse string as an integer "
        f"(got 'many')",
        f"{path}:13: offer: give exactly one of percent_off and amount_off "
        f'(got {{"type": "coupon", "percent_off": 10, "amount_off": 2}})',
        f"{path}:17: holdout: input should be less than or equal to 50 (got 60)",
    ]


def test_missing_fields_unknown_trigger_and_cron(tmp_path: Path) -> None:
    path = write(tmp_path, "spring.yaml", "name: spring\ntrigger:\n  type: birthday\nchannel: push\n")
    assert errors_of(path) == [
        f"{path}:1: template: required field missing",
        f"{path}:1: sender: required field missing",
        f"{path}:3: trigger.type: should be one of 'repurchase_due', 'event', 'lapse', 'schedule' (got 'birthday')",
    ]
    path = write(tmp_path, "spring.yaml", GOOD.replace("type: repurchase_due\n  top_k: 3", "type: schedule\n"
                                                        "  cron: '0 25 * * *'"))
    (line,) = errors_of(path)
    assert line.startswith(f"{path}:4: trigger.cron: not a crontab expression") and line.endswith("(got '0 25 * * *')")


def test_yaml_syntax_duplicate_keys_name_and_shape(tmp_path: Path) -> None:
    path = write(tmp_path, "spring.yaml", GOOD + "value: a: b\n")
    assert errors_of(path) == [f"{path}:12: YAML syntax: mapping values are not allowed here"]
    path = write(tmp_path, "spring.yaml", GOOD + "sender: Other\n")
    assert errors_of(path) == [f"{path}:12: sender: given twice (first on line 7)"]
    path = write(tmp_path, "autumn.yaml", GOOD)
    assert errors_of(path) == [f"{path}:1: name: must equal the file's name 'autumn' (got 'spring')"]
    assert errors_of(write(tmp_path, "spring.yaml", "- a\n- b\n")) == [
        f"{tmp_path / 'spring.yaml'}:1: the file must be a mapping of campaign fields (got a sequence)"]
    assert errors_of(write(tmp_path, "spring.yaml", "# nothing\n")) == [f"{tmp_path / 'spring.yaml'}:1: file is empty"]
    assert issubclass(CampaignError, ConfigError)


def _scalar_leaves(node: yaml.Node) -> list[yaml.ScalarNode]:
    if isinstance(node, yaml.MappingNode):
        return [leaf for _, value in node.value for leaf in _scalar_leaves(value)]
    if isinstance(node, yaml.SequenceNode):
        return [leaf for item in node.value for leaf in _scalar_leaves(item)]
    return [node]


@pytest.mark.parametrize("example", example_files(), ids=lambda p: p.stem)
def test_a_wrong_value_anywhere_is_reported_at_its_own_line(example: Path, tmp_path: Path) -> None:
    text = example.read_text(encoding="utf-8")
    leaves = _scalar_leaves(yaml.compose(text))
    assert len(leaves) > 10
    target = tmp_path / example.name
    for leaf in leaves:
        start, end = leaf.start_mark.index, leaf.end_mark.index
        target.write_text(text[:start] + "{bad: 1}" + text[end:], encoding="utf-8")
        lines = errors_of(target)
        assert {int(line.split(":")[1]) for line in lines} == {leaf.start_mark.line + 1}, (leaf.value, lines)


@settings(max_examples=30, deadline=None)
@given(example=st.sampled_from(example_files()), priority=st.integers(-100, 100),
       holdout=st.floats(0, 50, allow_nan=False), sends=st.integers(0, 9), days=st.integers(1, 30))
def test_a_campaign_written_out_as_yaml_loads_back_equal(example: Path, priority: int, holdout: float,
                                                         sends: int, days: int, tmp_path_factory) -> None:
    campaign = load_campaign(example).model_copy(update={"priority": priority, "holdout": holdout})
    data = campaign.model_dump(mode="json", exclude_none=True)
    data["caps"] = [{"sends": sends, "days": days}]
    expected = Campaign.model_validate(data)
    path = tmp_path_factory.mktemp("round") / example.name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert load_campaign(path) == expected


def test_check_dir_reports_per_file_missing_templates_and_duplicates(tmp_path: Path, templates: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    for name in ("cj_repurchase_coupon.yaml", "cj_winback.yaml"):
        shutil.copy(CAMPAIGNS / name, folder / name)
    report = check_dir(folder, templates)
    assert report.ok and sorted(report.campaigns) == ["cj_repurchase_coupon", "cj_winback"]

    bare = tmp_path / "no_templates"
    bare.mkdir()
    report = check_dir(folder, bare)
    line = next(i for i, text in enumerate((folder / "cj_winback.yaml").read_text().splitlines(), 1)
                if text.startswith("template:"))
    assert report.errors[folder / "cj_winback.yaml"] == [
        f"{folder / 'cj_winback.yaml'}:{line}: template: {bare / 'cj_winback.en.j2'} does not exist "
        f"(got 'cj_winback')"]
    assert not report.campaigns and len(report.lines()) == 2

    shutil.copy(folder / "cj_winback.yaml", folder / "cj_winback.yml")
    write(folder, "broken.yaml", "name: [\n")
    report = check_dir(folder, templates)
    assert sorted(report.campaigns) == ["cj_repurchase_coupon", "cj_winback"]
    assert report.errors[folder / "cj_winback.yml"] == [
        f"{folder / 'cj_winback.yml'}:4: name: campaign 'cj_winback' is already defined in "
        f"{folder / 'cj_winback.yaml'} (got 'cj_winback')"]
    assert report.errors[folder / "broken.yaml"][0].startswith(f"{folder / 'broken.yaml'}:2: YAML syntax:")
    assert not report.ok


@pytest.mark.skipif(not real_templates_present(), reason="delivery's templates arrive with the merge")
def test_examples_check_clean_against_the_real_templates() -> None:
    for folder in EXAMPLE_DIRS:
        report = check_dir(folder, TEMPLATES)
        assert report.ok, report.lines()
