"""The HTTP face of embedq: an OpenAI-compatible API over the same queue (`embedq http`).

Requests become `embed` jobs on the broker, the same task and the same rows as `embed.delay`
(the job id is the task id); the gateway waits for them in threads, never on the event loop, and
reads vectors and metrics from the database. Routes, statuses and settings: README, "HTTP API".

Framework: Starlette under uvicorn. What the gateway needs from a framework is routing, a
streaming request body (to refuse an oversized one before reading it all), a lifespan and a
threadpool; Starlette gives exactly that with one dependency (anyio). FastAPI's additions are
request validation and generated schemas: our validation must be the worker's own
(schemas.validate_job, the same messages), and its errors must come back in OpenAI's error shape,
so FastAPI's 422 responses would have to be overridden on every route. uvicorn is the standard
ASGI server; with h11 alone it needs no compiled extension.

    gateway.create_app(settings=None) -> the ASGI app
    gateway.server.serve(settings, host, port, allow_no_keys=False) -> runs it (what `embedq http` does)
"""
from .app import Gateway, create_app

__all__ = ["Gateway", "create_app"]
