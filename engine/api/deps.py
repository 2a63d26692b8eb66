"""What every route asks for: the engine home the app serves."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel

from engine.api.home import Home


def get_home(request: Request) -> Home:
    """The engine home this app serves."""
    return request.app.state.home


HomeDep = Annotated[Home, Depends(get_home)]


class Problem(BaseModel):
    """Why a request was refused: one sentence naming what is wrong."""

    detail: str


AUTH_RESPONSES: dict = {401: {"model": Problem, "description": "no token, or not the right one"},
                        403: {"model": Problem, "description": "no token is configured for this kind of request"}}
