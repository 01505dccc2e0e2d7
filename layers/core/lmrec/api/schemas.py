"""Request and response models. Strict types: ids are strings, numbers are numbers."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)


def _not_blank(value: str) -> str:
    # Ids are kept exactly as given (" 1 " and "1" are two users); one made only of
    # whitespace names nobody and is refused rather than stored.
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_not_blank)]
Category = Annotated[str, StringConstraints(min_length=1, max_length=128)]
MAX_HISTORY = 1000


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(Strict):
    user_id: Id | None = Field(None, description="known or new user; merged with stored events")
    history: list[Id] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description="item ids, oldest first, appended to the user's",
    )
    k: int = Field(10, ge=1, le=100)
    exclude_seen: bool | None = Field(
        None,
        description="drop the items the user has interacted with; unset: the deployment's "
        "LMREC_EXCLUDE_SEEN, else what the model's data taught (on for a shop's log, off "
        "where users repeat items: the manifest's repeats)",
    )
    exclude_items: list[Id] = Field(default_factory=list, max_length=MAX_HISTORY)
    include_categories: list[Category] = Field(
        default_factory=list,
        max_length=50,
        description="only items in one of these categories (a catalog item changed by PUT "
        "/v1/items by its stored ones); a name neither the model's catalog nor a stored item "
        "has matches no item (a warning names it), and when none is known: 422",
    )
    exclude_categories: list[Category] = Field(
        default_factory=list,
        max_length=50,
        description="no item in any of these categories; unknown names are ignored (a "
        "warning names them)",
    )
    explain: bool = True
    explore_share: float | None = Field(
        None,
        ge=0.0,
        le=0.5,
        description="share of k reserved for items added lately (younger than "
        "explore_max_age_hours), ranked by their content score; default LMREC_EXPLORE_SHARE (0)",
    )
    explore_max_age_hours: float | None = Field(None, gt=0, le=8760)

    @model_validator(mode="after")
    def _someone(self) -> RecommendRequest:
        if self.user_id is None and not self.history:
            raise ValueError("give a user_id, a history, or both")
        return self


MAX_CANDIDATES = 500


class RankingRequest(Strict):
    user_id: Id | None = Field(None, description="known or new user; merged with stored events")
    history: list[Id] = Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description="item ids, oldest first, appended to the user's",
    )
    candidates: list[Id] = Field(
        min_length=1,
        max_length=MAX_CANDIDATES,
        description=f"1 to {MAX_CANDIDATES} distinct item ids to order for the user",
    )
    exclude_seen: bool = Field(
        False,
        description="drop the candidates the user has interacted with (off by default: the "
        "caller chose the candidates)",
    )
    exclude_items: list[Id] = Field(default_factory=list, max_length=MAX_HISTORY)
    include_categories: list[Category] = Field(
        default_factory=list,
        max_length=50,
        description="drop candidates in none of these categories (as for recommendations)",
    )
    exclude_categories: list[Category] = Field(
        default_factory=list,
        max_length=50,
        description="drop candidates in any of these categories (as for recommendations)",
    )
    explain: bool = True

    @model_validator(mode="after")
    def _valid(self) -> RankingRequest:
        if self.user_id is None and not self.history:
            raise ValueError("give a user_id, a history, or both")
        repeated = [c for c, n in Counter(self.candidates).items() if n > 1]
        if repeated:
            # A ranking holds each candidate once; a repeat is a caller's mistake to fix, not
            # to guess at (which position would it keep?).
            names = ", ".join(repr(c[:64]) for c in repeated[:10])
            raise ValueError(f"candidates must be distinct; repeated: {names[:500]}")
        return self


class Reason(BaseModel):
    item_id: str
    title: str | None = None


class RankedItem(BaseModel):
    item_id: str = Field(description="the item id, exactly as the catalog (or the caller) has it")
    score: float | None = Field(description="the served model's score; null for an unknown id")
    rank: int
    attributes: dict[str, Any] = Field(default_factory=dict, description="catalog fields")
    reason: Reason | None = Field(None, description="the history item that contributed most")


class RecommendedItem(RankedItem):
    """An item of the catalog: its score is always known."""

    score: float


class RecommendResponse(BaseModel):
    user_id: str | None
    model_version: str
    strategy: Literal["personalized", "popular", "trending"] = Field(
        description="popular / trending: the user has no usable history, and the answer is "
        "all-time popularity or what is popular now (LMREC_COLD_START; under its default, auto, "
        "what the model's training job measured ahead on its data)"
    )
    items: list[RecommendedItem]
    history_length: int = Field(description="history items the model used")
    unknown_items: list[str] = Field(default_factory=list, description="ids not in the catalog")
    warnings: list[str] = Field(
        default_factory=list,
        description="what the reply could not use: unknown categories, a user store that is "
        "not set or did not answer, and why a reply with ids to go on is the popular one",
    )
    degraded: bool = Field(
        False, description="answered without the user's stored history (the store was slow)"
    )


class RankingResponse(BaseModel):
    user_id: str | None
    model_version: str
    strategy: Literal["personalized", "popular"]
    items: list[RankedItem] = Field(
        description="the known candidates by score, then the unknown ones in the order given"
    )
    history_length: int = Field(description="history items the model used")
    unknown_items: list[str] = Field(
        default_factory=list, description="history ids not in the catalog"
    )
    unknown_candidates: list[str] = Field(
        default_factory=list, description="candidates not in the catalog: ranked last"
    )
    filtered_candidates: list[str] = Field(
        default_factory=list, description="candidates the filters removed: not in items"
    )
    warnings: list[str] = Field(default_factory=list)
    degraded: bool = Field(
        False, description="answered without the user's stored history (the store was slow)"
    )


class TrendingResponse(BaseModel):
    model_version: str
    half_life_hours: float = Field(description="the decay the scores were computed with")
    items: list[RecommendedItem] = Field(
        description="score: the decayed count of events the API received, plus the "
        "training data's recent popularity as a prior"
    )
    counted_at: str | None = Field(
        description="when the live counts were read (they are cached for a few seconds); "
        "null: no live counts were used"
    )
    warnings: list[str] = Field(default_factory=list)
    degraded: bool = Field(
        False, description="answered without the live counts (the store was slow or failed)"
    )


class SimilarResponse(BaseModel):
    item_id: str
    model_version: str
    items: list[RecommendedItem]
    warnings: list[str] = Field(default_factory=list)


class ItemResult(BaseModel):
    item_id: str
    status: Literal["added", "updated", "unavailable"]
    in_model: bool = Field(description="the serving model's catalog holds the id")
    scored: bool = Field(description="recommendable: in the model, or new with a content part")


class ItemsResponse(BaseModel):
    stored: int
    items: list[ItemResult]
    visible_within_seconds: float = Field(
        description="every warm instance serves the change within this bound"
    )
    warnings: list[str] = Field(default_factory=list)


MAX_CLOCK_SKEW_SECONDS = 300
EARLIEST_TIMESTAMP = 946_684_800  # 2000-01-01T00:00:00Z: nothing older is a real event


class EventIn(Strict):
    user_id: Id
    item_id: Id
    timestamp: float | None = Field(
        None,
        ge=EARLIEST_TIMESTAMP,
        allow_inf_nan=False,
        description="unix seconds, 2000-01-01 to now + 5 minutes; default: now",
    )
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "interaction"

    @field_validator("event_type")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        # The stored event's key digests item NUL type (lmrec.userstore.event_key): a NUL in
        # the type would let two different events share one key, and one be dropped.
        if "\0" in value:
            raise ValueError("event_type must not contain a NUL character")
        return value

    @field_validator("timestamp")
    @classmethod
    def _not_future(cls, value: float | None) -> float | None:
        # Events sort by time: one dated in the future would stay "newest" until its TTL.
        if value is not None and value > time.time() + MAX_CLOCK_SKEW_SECONDS:
            raise ValueError("timestamp is in the future")
        return value


class EventsRequest(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=100)


class EventsResponse(BaseModel):
    recorded: int = Field(
        description="events stored: one per distinct (user, item, event type, millisecond); "
        "an event sent twice is stored, and counted, once"
    )
    unknown_items: list[str] = Field(
        default_factory=list, description="stored, but not in the current catalog"
    )


class DeleteResponse(BaseModel):
    user_id: str
    deleted: int = Field(
        description="history, event and item-count records removed from the user store"
    )
    erasure_recorded: bool = Field(
        False, description="the deletion job will remove the user's rows from the training data"
    )
    complete: bool = Field(
        True,
        description="every history and event record is gone; false: the rest is deleted by "
        "the deletion job (a DELETE again continues at once)",
    )


class ModelInfo(BaseModel):
    model_version: str
    created_at: str
    data_fingerprint: str | None
    catalog_size: int
    users: int
    item_table_dtype: str
    metrics: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    model_version: str | None = Field(description="the version actually serving")
    loaded_at: str | None = Field(None, description="when the serving version was loaded")
    checked_at: str | None = Field(None, description="when the pointer was last checked")
    reason: str | None = Field(description="why the last load or refresh failed, if it did")


class ErrorBody(BaseModel):
    detail: str
