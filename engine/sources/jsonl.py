"""JSON Lines, one event a line, for integrations. Replayed in file order, as a stream arrives.

A line is a purchase (the `Purchase` fields) or, with `"type": "profile"`, a `CustomerProfile`.
A timestamp without an offset takes the source's declared zone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from engine.errors import DecodeError, SourceError
from engine.events import Event, Line, decode_profile, decode_purchase, decode_response
from engine.sources import Record


class JsonLinesSource:
    """Events from a `.jsonl` file; position = line index."""

    def __init__(self, path: str | Path, zone: str = "UTC", follow: bool = False) -> None:
        self.path = Path(path)
        self.decoder = JsonLinesDecoder(zone)
        self.key = f"jsonl:{self.path.resolve()}"
        self.follow = follow  # a followed file may be empty yet, and its unfinished last line is not read
        if not self.path.is_file():
            raise SourceError(f"{self.path}: no such file")
        self._lines: list[str] = []
        self.refresh()
        if not follow and not any(line.strip() for line in self._lines):
            raise SourceError(f"{self.path}: the file is empty")

    def refresh(self) -> int:
        """Read the file again (it may have grown); the number of lines it now holds."""
        data = self.path.read_bytes()
        if self.follow:
            data = data[: data.rfind(b"\n") + 1]  # a line still being written waits for its newline
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise SourceError(f"{self.path} line {line}: bytes that are not UTF-8 ({exc.reason})") from None
        self._lines = text.splitlines()
        return len(self._lines)

    def __len__(self) -> int:
        return len(self._lines)

    def records(self, start: int = 0) -> Iterator[Record]:
        """Non-blank lines from line index `start` on."""
        for i in range(start, len(self._lines)):
            if self._lines[i].strip():
                yield Record(i, self._lines[i], f"{self.path.name} line {i + 1}")

class JsonLinesDecoder:
    """One JSON text (a line of the file, or a message) into a purchase or a profile."""

    def __init__(self, zone: str = "UTC") -> None:
        self.zone = ZoneInfo(zone)

    def decode(self, raw: str | bytes, where: str) -> Event:
        """Parse the text as JSON, then validate it as a purchase or a profile."""
        return self.decode_object(parse_object(raw, where), where)

    def decode_object(self, obj: dict, where: str) -> Event:
        """Validate a parsed JSON object as a purchase, a profile or an offer response (`obj` is consumed)."""
        kind = obj.pop("type", "purchase")
        if kind == "profile":
            return decode_profile(obj, where)
        if kind == "offer_response":
            return decode_response(obj, where)
        if kind != "purchase":
            raise DecodeError(f"{where}: type: unknown event type {kind!r} (purchase, profile or offer_response)")
        lines = obj.get("lines")
        if isinstance(lines, list):  # lines may be objects with Line's field names, or 4-item arrays
            obj["lines"] = [_line_tuple(line) if isinstance(line, dict) else line for line in lines]
        when = obj.get("event_time")
        if isinstance(when, str):
            obj["event_time"] = _localize(when, self.zone, where)
        return decode_purchase(obj, where)


def parse_object(raw: str | bytes, where: str) -> dict:
    """The JSON object `raw` holds, or `DecodeError` saying what it is instead."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _localize(text: str, zone: ZoneInfo, where: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise DecodeError(f"{where}: event_time: {text!r} is not an ISO 8601 date-time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def _line_tuple(line: dict) -> tuple | dict:
    """An object line as a `Line` tuple; unknown or missing keys are left for validation to name."""
    if set(line) - set(Line._fields) or "product_id" not in line:
        return line
    return tuple(Line(**line))
