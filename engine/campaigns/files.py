"""Campaign files: YAML read with line numbers, validated by the schema, every error worded
"<file>:<line>: <field.path>: <problem> (got <value>)" so a marketer can go straight to it.

YAML 1.1's implicit types are narrowed to what a campaign means: `21:00` stays a time of day (PyYAML would read
the sexagesimal integer 1260) and only `true`/`false` are booleans (`no`, `on`, `off` stay text).
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from engine.campaigns.schema import Campaign
from engine.errors import CampaignError

SUFFIXES = (".yaml", ".yml")


class _Loader(yaml.SafeLoader):
    """SafeLoader without sexagesimal numbers and with YAML 1.2 booleans; duplicate keys are kept for checking."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _show(value: Any) -> str:
    """A bad value as the message quotes it: short, on one line."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_defaults=True)
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _compose(path: Path, text: str) -> yaml.Node:
    """The YAML node tree of `text`; a syntax error becomes a CampaignError at its line."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "not YAML"
        raise CampaignError(f"{path}:{line}: YAML syntax: {problem}", [f"{path}:{line}: YAML syntax: {problem}"]) \
            from None
    except yaml.YAMLError as exc:
        raise CampaignError(f"{path}:1: YAML: {exc}", [f"{path}:1: YAML: {exc}"]) from None
    if node is None:
        raise CampaignError(f"{path}:1: file is empty", [f"{path}:1: file is empty"])
    if not isinstance(node, yaml.MappingNode):
        got = f"{path}:{_line(node)}: the file must be a mapping of campaign fields (got a {node.id})"
        raise CampaignError(got, [got])
    return node


def _duplicate_keys(path: Path, node: yaml.Node, where: tuple[str, ...] = ()) -> list[str]:
    """Keys given twice in one mapping (PyYAML would keep the last one silently)."""
    found: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                dotted = _dotted((*where, name))
                found.append(f"{path}:{_line(key)}: {dotted}: given twice (first on line {seen[name]})")
            else:
                seen[name] = _line(key)
            found += _duplicate_keys(path, value, (*where, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found += _duplicate_keys(path, item, (*where, str(i)))
    return found


def _locate(root: yaml.Node, loc: Sequence[str | int], key: bool = False) -> yaml.Node:
    """The deepest node on `loc` (a pydantic error location); steps naming no node (union tags) are skipped.

    With `key`, the last step's key node rather than its value (an unknown field's line is its key's).
    """
    node = root
    for i, step in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(step):
                    node = k if key and last else v
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
    return node


class _Tagged(dict):
    """The members of a discriminated union by tag (a step of the location picks one)."""


@dataclass
class _Container:
    """A list or dict field: any step into it reaches `item`."""

    item: Any


def _resolve(loc: Sequence[str | int]) -> tuple[type[BaseModel] | None, tuple[str | int, ...]]:
    """The model whose field `loc` ends in, and `loc` without union tags (the path a person reads and the file
    holds)."""
    model: Any = Campaign
    path: list[str | int] = []
    for i, step in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(model, _Tagged):
            if step in model:
                model = model[step]
                continue  # a union tag: not part of the path a person reads
            model = None
        path.append(step)
        if last:
            break
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(step, str) \
                and step in model.model_fields:
            model = _open(model.model_fields[step].annotation)
        elif isinstance(model, _Container):
            model = model.item
        else:
            model = None
    return (model if isinstance(model, type) and issubclass(model, BaseModel) else None), tuple(path)


def _open(annotation: Any) -> Any:
    """What a field's annotation holds: a model, a union of models by tag, or a container of either."""
    while True:
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            annotation = args[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1:
                annotation = rest[0]
                continue
            members = {}
            for m in rest:
                if isinstance(m, type) and issubclass(m, BaseModel) and "type" in m.model_fields:
                    tag_type = m.model_fields["type"].annotation
                    members[typing.get_args(tag_type)[0]] = m
            return _Tagged(members) if members else None
        elif origin is list:
            return _Container(_open(args[0]))
        elif origin is dict:
            return _Container(_open(args[1]))
        else:
            return annotation


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(campaign)"


def _problem(error: dict) -> str:
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def _wording(path: Path, root: yaml.Node, error: dict) -> str:
    """One pydantic error as "<file>:<line>: <field.path>: <problem> (got <value>)"."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        discriminator = str(error.get("ctx", {}).get("discriminator", "'type'")).strip("'")
        loc = (*loc, discriminator)
        node = _locate(root, loc)
        _, shown = _resolve(loc)
        if kind == "union_tag_not_found":
            return f"{path}:{_line(node)}: {_dotted(shown)}: required field missing"
        expected = error["ctx"]["expected_tags"]
        return f"{path}:{_line(node)}: {_dotted(shown)}: should be one of {expected} (got {_show(error['ctx']['tag'])})"
    model, shown = _resolve(loc)
    if kind == "extra_forbidden":
        node = _locate(root, shown, key=True)
        problem = "unknown field"
        if model is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
            known = f"did you mean {close[0]!r}?" if close else f"fields: {', '.join(model.model_fields)}"
            problem += f" ({known})"
        return f"{path}:{_line(node)}: {_dotted(shown)}: {problem}"
    if kind == "missing":
        parent = _locate(root, shown[:-1])
        return f"{path}:{_line(parent)}: {_dotted(shown)}: required field missing"
    node = _locate(root, shown)
    if isinstance(node, yaml.CollectionNode) and shown:
        node = _locate(root, shown, key=True)  # a whole mapping or list is wrong: point at its field's name
    return f"{path}:{_line(node)}: {_dotted(shown)}: {_problem(error)} (got {_show(error.get('input'))})"


def load_campaign(path: Path) -> Campaign:
    """The campaign in a YAML file; raises CampaignError listing every problem with its file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CampaignError(f"{path}: cannot read: {exc.strerror}", [f"{path}: cannot read: {exc.strerror}"]) \
            from None
    except UnicodeDecodeError as exc:
        got = f"{path}: not UTF-8 text (byte {exc.start})"
        raise CampaignError(got, [got]) from None
    root = _compose(path, text)
    problems = _duplicate_keys(path, root)
    data = _Loader(text).get_single_data() if not problems else None
    campaign: Campaign | None = None
    if data is not None:
        try:
            campaign = Campaign.model_validate(data)
        except ValidationError as exc:
            problems += [_wording(path, root, e) for e in exc.errors()]
    if campaign is not None and campaign.name != path.stem:
        node = _locate(root, ("name",))
        problems.append(f"{path}:{_line(node)}: name: must equal the file's name {path.stem!r} "
                        f"(got {_show(campaign.name)})")
    if problems:
        problems.sort(key=lambda line: int(line[len(str(path)) + 1:].split(":", 1)[0]))
        raise CampaignError("\n".join(problems), problems)
    return campaign  # type: ignore[return-value]


def template_path(templates: Path, campaign: Campaign) -> Path:
    """Where the campaign's template lives: `<templates>/<template>.<language>.j2`."""
    return Path(templates) / f"{campaign.template}.{campaign.language}.j2"


def _template_line(path: Path) -> int:
    """The line of the file's `template` field (1 when it cannot be found)."""
    try:
        root = _compose(path, path.read_text(encoding="utf-8"))
    except (CampaignError, OSError, UnicodeDecodeError):
        return 1
    return _line(_locate(root, ("template",)))


def check_campaign(path: Path, templates: Path) -> Campaign:
    """The campaign in `path` once its template exists and renders; raises CampaignError worded like load's."""
    campaign = load_campaign(path)
    check_template_of(path, templates, campaign)
    return campaign


def check_template_of(path: Path, templates: Path, campaign: Campaign) -> None:
    """Raise CampaignError at the line of `template` when the campaign's template (or its coupon reminder's) is
    missing or does not render."""
    from engine.delivery.render import RenderError, check_template

    reminder = campaign.reminder_template
    for name, shown in [(campaign.template, campaign), *([(reminder, campaign.model_copy(
            update={"template": reminder}))] if reminder else [])]:
        where = template_path(templates, shown)
        if not where.is_file():
            line = f"{path}:{_template_line(path)}: template: {where} does not exist (got {_show(name)})"
            raise CampaignError(line, [line])
        try:
            check_template(Path(templates), campaign, shown=shown)
        except RenderError as exc:
            line = f"{path}:{_template_line(path)}: template: {exc}"
            raise CampaignError(line, [line]) from None


@dataclass
class CheckReport:
    """What checking found: the valid campaigns by name, each loaded campaign's file, the error lines per file."""

    campaigns: dict[str, Campaign] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # every campaign that loaded -> its file
    errors: dict[Path, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every file is a valid campaign."""
        return not self.errors

    def lines(self) -> list[str]:
        """Every error line, file by file."""
        return [line for path in sorted(self.errors) for line in self.errors[path]]

    def add_file(self, path: Path, templates: Path) -> None:
        """Check one more file: its own problems, a name already taken, then its template."""
        path = Path(path)
        try:
            campaign = load_campaign(path)
        except CampaignError as exc:
            self.errors.setdefault(path, []).extend(exc.lines)
            return
        if campaign.name in self.files:
            root = _compose(path, path.read_text(encoding="utf-8"))
            self.errors.setdefault(path, []).append(
                f"{path}:{_line(_locate(root, ('name',)))}: name: campaign {campaign.name!r} is already defined in "
                f"{self.files[campaign.name]} (got {_show(campaign.name)})")
            return
        self.files[campaign.name] = path
        try:
            check_template_of(path, templates, campaign)
        except CampaignError as exc:
            self.errors.setdefault(path, []).extend(exc.lines)
            return
        self.campaigns[campaign.name] = campaign


def campaign_files(directory: Path) -> list[Path]:
    """The campaign files directly in `directory` (`*.yaml`, `*.yml`), sorted; sub-folders are other sets."""
    directory = Path(directory)
    if not directory.is_dir():
        line = f"{directory}: not a folder of campaign files"
        raise CampaignError(line, [line])
    return sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())


def check_dir(directory: Path, templates: Path, report: CheckReport | None = None) -> CheckReport:
    """Load and check every campaign file in `directory` (into `report` when given, so several folders are one
    set): errors per file, duplicate names, missing templates."""
    report = report if report is not None else CheckReport()
    for path in campaign_files(directory):
        report.add_file(path, templates)
    return report


def schema_json() -> str:
    """The JSON Schema of a campaign file, as `campaigns/campaign.schema.json` holds it."""
    schema = Campaign.model_json_schema()
    schema["title"] = "nudge campaign"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
