"""Who may do what: bearer tokens from the settings, and a limit on request bodies.

Writes (POST, DELETE) need the write token; with none configured every write is refused (403). Customer-level reads
need the read token or the write token, unless `api_read_auth` is off; with neither configured they are refused.
Tokens are compared in constant time. Aggregate reads (overview, segments, campaigns, reports, models, dead
letters, metrics) carry no single customer's figures and need no token.
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.config import Settings

bearer = HTTPBearer(auto_error=False, scheme_name="bearer token",
                    description="NUDGE_API_WRITE_TOKEN for writes; NUDGE_API_READ_TOKEN (or the write token) for "
                                "customer-level reads")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _settings(request: Request) -> Settings:
    return request.app.state.home.settings


def _matches(given: str, wanted: SecretStr | None) -> bool:
    return wanted is not None and hmac.compare_digest(given.encode(), wanted.get_secret_value().encode())


def require_write(request: Request, credentials: Credentials) -> None:
    """A write: the write token, or 401 (403 when no write token is configured)."""
    token = _settings(request).api_write_token
    if token is None:
        raise HTTPException(403, "writes are disabled: no write token is configured (set NUDGE_API_WRITE_TOKEN)")
    if credentials is None:
        raise HTTPException(401, "this endpoint writes: send the header Authorization: Bearer <write token>",
                            headers=_CHALLENGE)
    if not _matches(credentials.credentials, token):
        raise HTTPException(401, "the token is not the write token", headers=_CHALLENGE)


def require_read(request: Request, credentials: Credentials) -> None:
    """A customer-level read: the read or the write token, or 401 (403 when neither is configured)."""
    settings = _settings(request)
    if not settings.api_read_auth:
        return
    tokens = [t for t in (settings.api_read_token, settings.api_write_token) if t is not None]
    if not tokens:
        raise HTTPException(403, "customer-level reads are disabled: no read token is configured (set "
                                 "NUDGE_API_READ_TOKEN, or NUDGE_API_READ_AUTH=false to open them)")
    if credentials is None:
        raise HTTPException(401, "customer-level read: send the header Authorization: Bearer <read token>",
                            headers=_CHALLENGE)
    if not any(_matches(credentials.credentials, t) for t in tokens):
        raise HTTPException(401, "the token is neither the read token nor the write token", headers=_CHALLENGE)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 before the app reads any of it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        # Read it all first (it is small, or refused): a body sent in chunks without a length is counted too.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: the app sees what came
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        given = False

        async def replay() -> Message:
            nonlocal given
            if given:
                return await receive()
            given = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps({"detail": f"request body over {self.max_bytes:,} bytes (NUDGE_API_MAX_BODY_BYTES)"})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload.encode()})
