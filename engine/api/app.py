"""The API's app factory: `create_app(settings)` serves one engine home under /api, /metrics and /docs, and the
dashboard's static files at / when `engine/api/static/` exists."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from engine.api import campaigns, customers, ingest, monitoring
from engine.api.home import Home
from engine.api.metrics import EngineCollector
from engine.api.security import BodyLimit
from engine.config import Settings
from engine.errors import NudgeError

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/api"


class FiniteJSONResponse(JSONResponse):
    """JSON where a non-finite number (a metric a model could not compute) is null, never an invalid `NaN`."""

    def render(self, content: Any) -> bytes:
        """The content as JSON, NaN and infinities as null."""
        return super().render(_finite(content))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over the engine home `settings` name (default: from the environment)."""
    settings = settings or Settings()
    home = Home(settings)
    app = FastAPI(title="nudge", version="1", default_response_class=FiniteJSONResponse,
                  description="The marketer's console API: customers, segments, campaigns and their reports, "
                              "models, ingest and erasure over one engine home. Writes need the write token; "
                              "customer-level reads the read token.")
    app.state.home = home
    app.state.metrics = CollectorRegistry(auto_describe=False)  # its own: the figures of this home alone
    app.state.metrics.register(EngineCollector(home))
    for router in (ingest.router, customers.router, campaigns.router, monitoring.router):
        app.include_router(router, prefix=PREFIX)
    app.include_router(monitoring.metrics_router)

    @app.exception_handler(NudgeError)
    async def _engine_error(request: Request, exc: NudgeError) -> JSONResponse:
        return FiniteJSONResponse({"detail": str(exc)}, status_code=400)

    app.openapi = lambda: _openapi(app, home)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    if settings.api_cors_origins:  # closed unless configured: no CORS headers, so browsers keep other origins out
        app.add_middleware(CORSMiddleware, allow_origins=settings.api_cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    if STATIC.is_dir():
        app.mount("/", StaticFiles(directory=STATIC, html=True), name="dashboard")
    return app


def _openapi(app: FastAPI, home: Home) -> dict[str, Any]:
    """The OpenAPI document, its examples drawn from the engine home served (a real customer and campaign), so
    "Try it out" and a schema fuzzer meet answers, not only 404s."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    customer = next(iter(sorted(home.states())), None)
    running = sorted(home.running())
    campaign = next((n for n in running if n != "consent_reconfirm"), running[0] if running else None)
    examples = {"customer_id": customer, "name": campaign}
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            for parameter in operation.get("parameters", []):
                value = examples.get(parameter["name"]) if parameter.get("in") == "path" else None
                if method == "delete" and parameter["name"] == "customer_id":
                    value = ingest.EXAMPLE["customer_id"]  # the customer the POST /api/events example makes
                if value is not None:
                    parameter["example"] = value
            if path == f"{PREFIX}/campaigns/validate" and campaign is not None:
                file = home.campaign_folder() / f"{campaign}.yaml"
                if file.is_file():
                    operation["requestBody"]["content"]["text/plain"]["example"] = file.read_text(encoding="utf-8")
    app.openapi_schema = schema
    return schema
