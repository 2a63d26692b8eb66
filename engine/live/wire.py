"""The wire format of the `purchases` topic: one JSON object per message, keyed by the customer id.

The value is a `jsonl` source's line (see `engine.sources.jsonl`) with `"schema": 1` first, so the worker
decodes it with the same decoder; docs/wire-format.md describes the fields and the version rule.
"""

from __future__ import annotations

from engine.errors import DecodeError
from engine.events import CustomerProfile, Event, OfferResponse, Purchase
from engine.sources.jsonl import JsonLinesDecoder, parse_object

SCHEMA = 1
KINDS: dict[type, str] = {Purchase: "purchase", CustomerProfile: "profile", OfferResponse: "offer_response"}
_HEAD = f'{{"schema":{SCHEMA},'  # how `encode` starts every value: the decoder's one-parse path


def encode(event: Event) -> tuple[bytes, bytes]:
    """The (key, value) message of an event: fields at their default are left out."""
    body = event.model_dump_json(exclude_defaults=True)  # never "{}": customer_id has no default
    value = f'{_HEAD}"type":"{KINDS[type(event)]}",{body[1:]}'
    return event.customer_id.encode(), value.encode()


class WireDecoder:
    """A message value into its event; a schema this consumer does not read is a `DecodeError` (a dead letter)."""

    def __init__(self) -> None:
        self.jsonl = JsonLinesDecoder()  # a time without an offset is read as UTC

    def decode(self, raw: str | bytes, where: str) -> Event:
        """Check `schema`, then decode the rest as a JSON Lines event."""
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if text.startswith(_HEAD):  # what `encode` writes: drop the version in place and parse once
            return self.jsonl.decode("{" + text[len(_HEAD):], where)
        obj = parse_object(text, where)
        if "schema" not in obj:
            raise DecodeError(f'{where}: schema: missing (a message of this topic carries "schema": {SCHEMA})')
        schema = obj.pop("schema")
        if type(schema) is not int or schema != SCHEMA:
            raise DecodeError(f"{where}: schema: {schema!r} is not a version this consumer reads (it reads {SCHEMA})")
        return self.jsonl.decode_object(obj, where)


_decoder = WireDecoder()


def decode(value: bytes, where: str) -> Event:
    """The event a message value holds, or `DecodeError` naming `where` and the problem."""
    return _decoder.decode(value, where)
