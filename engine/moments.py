"""How read models spell a time: ISO 8601 with its offset (`2017-10-01T00:00:00+00:00`) in JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import PlainSerializer

Moment = Annotated[datetime, PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json")]
