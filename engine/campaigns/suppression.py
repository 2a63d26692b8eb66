"""The suppression list: customers erased on request, kept only as a one-way token of their id, so they are never
messaged again although the id itself is gone.

The token is HMAC-SHA256 of the id under the engine's erasure key: every process sharing the key makes the same
token for the same id, and without the key a token can neither be turned back nor tried against guessed ids.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable

from sqlalchemy import Engine, select

from engine.config import Settings
from engine.db import suppression
from engine.errors import ConfigError

TOKEN_PREFIX = "erased:"


def erasure_key(settings: Settings) -> bytes:
    """The erasure key: the configured secret, else the one kept in `<home>/erasure.key` (made on first use, 0600)."""
    if settings.erasure_secret is not None:
        key = settings.erasure_secret.get_secret_value().encode()
        if len(key) < 16:
            raise ConfigError("NUDGE_ERASURE_SECRET: at least 16 characters (it keys the one-way erasure token)")
        return key
    path = settings.home / "erasure.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: theirs is the key
        return path.read_bytes().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
        fh.flush()
        os.fsync(fh.fileno())
    return path.read_bytes().strip()


def customer_token(key: bytes, customer_id: str) -> str:
    """The one-way token that stands for an erased customer's id."""
    return TOKEN_PREFIX + hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()


class Suppression:
    """The erased customers, asked as `customer_id in suppression` (what arbitration and delivery check).

    `key` is called only once a token is on the list, so an engine that never erased anyone needs no key.
    """

    def __init__(self, engine: Engine, key: Callable[[], bytes]) -> None:
        self.engine = engine
        self._key_of = key
        self._key: bytes | None = None
        self.tokens: frozenset[str] = frozenset()
        self._asked: dict[str, bool] = {}
        suppression.create(engine, checkfirst=True)
        self.refresh()

    def refresh(self) -> None:
        """Read the list again (an erasure in another process counts from the next decision)."""
        with self.engine.connect() as conn:
            tokens = frozenset(conn.execute(select(suppression.c.token)).scalars())
        if tokens != self.tokens:
            self.tokens, self._asked = tokens, {}

    def token(self, customer_id: str) -> str:
        """The customer's token under this engine's key."""
        if self._key is None:
            self._key = self._key_of()
        return customer_token(self._key, customer_id)

    def __contains__(self, customer_id: object) -> bool:
        if not self.tokens or not isinstance(customer_id, str):
            return False
        known = self._asked.get(customer_id)
        if known is None:
            known = self._asked[customer_id] = self.token(customer_id) in self.tokens
        return known
