"""Shared dependencies: settings, the model state, the user store, the model itself.

All are `async def`: they do no I/O, and FastAPI would otherwise run each sync dependency in
a worker thread, which costs more than the whole recommendation (Mangum starts a fresh event
loop per invocation, so there is no warm thread pool)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from lmrec.recommend import Recommender
from lmrec.serving import ModelState
from lmrec.settings import Settings
from lmrec.trending import TrendingCounts
from lmrec.userstore import UserStore

NO_MODEL = "no model is loaded yet; try again shortly"


async def get_state(request: Request) -> ModelState:
    return request.app.state.model_state


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def refresh_when_due(state: ModelState) -> None:
    """Re-read the pointer when due, off the event loop: waited for (within a bound) while
    there is no model yet, in the background once a model is being served."""
    if state.refresh_due():
        if state.recommender is None:
            await run_in_threadpool(state.wait_for_model, state.settings.load_wait_seconds)
        else:
            state.refresh_in_background()


async def require_model(state: ModelState) -> Recommender:
    """The serving model, or 503. Called inside the routes, after FastAPI has validated the
    request, so a malformed request gets its 422 whether or not a model is loaded."""
    await refresh_when_due(state)
    rec = state.recommender
    if rec is None:
        # The cause (which may name the store) goes to the log and, redacted, to /health.
        raise HTTPException(503, NO_MODEL)
    return rec


async def get_users(request: Request) -> UserStore | None:
    return request.app.state.users


async def get_trending(request: Request) -> TrendingCounts | None:
    return request.app.state.trending


StateDep = Annotated[ModelState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
UsersDep = Annotated[UserStore | None, Depends(get_users)]
TrendingDep = Annotated[TrendingCounts | None, Depends(get_trending)]


def check_query(request: Request, known: set[str] | frozenset[str]) -> None:
    """422 for a query parameter the route does not take, or a single-valued one given more
    than once: FastAPI would ignore the first silently and keep the last of the second. Every
    name in `known` but the list ones (the routes' categories and exclusions) is single."""
    params = request.query_params
    unknown = sorted(set(params) - set(known))
    if unknown:
        names = ", ".join(repr(n[:64]) for n in unknown[:10])
        raise HTTPException(
            422, f"unknown query parameter(s): {names}; known: {', '.join(sorted(known))}"
        )
    for name in sorted(set(params) - LIST_PARAMETERS):
        if (n := len(params.getlist(name))) > 1:
            raise HTTPException(422, f"{name}: given {n} times; give it once")


LIST_PARAMETERS = frozenset({"include_categories", "exclude_categories", "exclude_items"})
