"""The recommendation API (FastAPI): importable as an app, served by Mangum on Lambda or by
uvicorn locally (`lmrec serve`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lmrec import __version__, aws
from lmrec.api import docs
from lmrec.api.middleware import RequestChecks
from lmrec.api.routes import (
    events,
    items,
    model,
    rankings,
    recommendations,
    trending,
    users,
)
from lmrec.redact import truncate
from lmrec.serving import ModelState
from lmrec.settings import Settings
from lmrec.trending import TrendingCounts
from lmrec.userstore import UserStore, open_user_store

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{truncate(where)}: {truncate(str(err.get('msg', 'invalid')))}")
    return "; ".join(parts)[:2000]


def _body_message(cause: BaseException) -> str:
    """Why a body FastAPI could not parse as JSON is not JSON text (its JSONDecodeErrors are
    validation errors already)."""
    if isinstance(cause, UnicodeDecodeError):
        return f"body: not valid UTF-8 (byte {cause.start})"
    if isinstance(cause, RecursionError):
        return "body: JSON nested too deeply"
    return f"body: {truncate(str(cause))}"


def create_app(
    settings: Settings, state: ModelState, user_store: UserStore | None = None
) -> FastAPI:
    app = FastAPI(
        title="lmrec",
        version=__version__,
        description="Sequential recommendations from a distilled Transformer, served with numpy.",
        docs_url=None,  # docs.install serves them, offline when it can
        redoc_url=None,
    )
    aws.configure(settings)  # the user store's client is made within the API's budget
    app.state.settings = settings
    app.state.model_state = state
    if user_store is None and settings.user_store_uri():
        # No I/O here (DynamoDB: a name; SQLite: opens or creates the file).
        user_store = open_user_store(settings.user_store_uri())
    app.state.users = user_store
    app.state.trending = None
    if user_store is not None:  # one per warm instance: settled buckets are read once
        app.state.trending = TrendingCounts(
            user_store.trending_counts,
            settings.trending_window_hours * 3600,
            settings.trending_cache_seconds,
            max_counters=settings.trending_max_counters,
        )
    app.state.live = None
    if settings.item_store:
        from lmrec.itemstore import open_item_store
        from lmrec.livesync import LiveSync

        live = LiveSync(
            open_item_store(settings.item_store),
            settings.item_poll_seconds,
            settings.item_max_stale_seconds,
        )
        live.start()  # the first read runs beside the model's load (a cold start)
        app.state.live = live
    for module in (recommendations, rankings, items, events, users, model, trending):
        app.include_router(docs.document_errors(module.router))
    docs.install(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        # FastAPI answers 400 for a body json.loads raised on with anything but a
        # JSONDecodeError (bytes that are not UTF-8, nesting past the recursion limit, an
        # integer of 5,000 digits): the same mistake as malformed JSON, so the same 422.
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, ValueError | RecursionError):
            return JSONResponse({"detail": _body_message(cause)}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_middleware(RequestChecks, max_bytes=settings.max_body_bytes)
    return app
