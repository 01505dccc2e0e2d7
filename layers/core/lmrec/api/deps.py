"""Shared dependencies: settings, the model state, the events store."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from lmrec.events import EventStore
from lmrec.recommend import Recommender
from lmrec.serving import ModelState
from lmrec.settings import Settings


def get_state(request: Request) -> ModelState:
    return request.app.state.model_state


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_recommender(state: Annotated[ModelState, Depends(get_state)]) -> Recommender:
    state.refresh_if_due()
    rec = state.recommender
    if rec is None:
        raise HTTPException(503, f"no model is loaded yet: {state.problem or 'not loaded'}")
    return rec


def get_events(request: Request) -> EventStore | None:
    return request.app.state.events


StateDep = Annotated[ModelState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
EventsDep = Annotated[EventStore | None, Depends(get_events)]
