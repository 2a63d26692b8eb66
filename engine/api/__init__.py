"""The HTTP API (`nudge serve`): the engine's read models, campaign controls, ingest and erasure over FastAPI, and
the dashboard's static files. `create_app(settings)` in `engine.api.app` builds it."""
