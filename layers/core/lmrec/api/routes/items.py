"""Items: similar items (from content and behaviour), and items added or changed after the
model was built (PUT, DELETE; lmrec.liveitems serves them)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from lmrec import liveitems
from lmrec.api import live as live_api
from lmrec.api.auth import CallerDep, require_service
from lmrec.api.deps import SettingsDep, StateDep, check_query, require_model
from lmrec.api.routes.recommendations import LiveDep, item_out
from lmrec.api.schemas import Id, ItemResult, ItemsResponse, SimilarResponse
from lmrec.itemstore import ItemInvalid, ItemRecord, ItemStoreUnavailable, check_items, now_ms
from lmrec.livesync import LiveSync
from lmrec.recommend import Recommendation, Recommender
from lmrec.redact import truncate
from lmrec.settings import Settings

router = APIRouter(prefix="/v1/items", tags=["items"])


def _similar_rows(
    rec: Recommender, ov: liveitems.Overlay | None, item_id: str, k: int
) -> tuple[list[Recommendation], list[str]] | None:
    """Nearest available items, catalog and new together, by cosine in the item table's
    space (model rows: behaviour and content; new items: content). None: unknown id."""
    hidden = ov.hidden_rows if ov is not None else np.zeros(0, np.int64)
    row = rec.catalog.row(item_id)
    if row is not None:
        vector = rec.model.embed(np.asarray([row]))[0]
        exclude = np.concatenate([hidden, [row]]).astype(np.int64)
    elif ov is not None and item_id in ov.index:
        if ov.vectors is None:
            why = (
                f"item {truncate(item_id)!r} has no vector: model {rec.version} has no content part"
            )
            return [], [why]
        vector, exclude = ov.vectors[ov.index[item_id]], hidden
    else:
        return None
    found = rec.similar_to(vector, k, exclude)
    if ov is not None and ov.unit is not None and len(ov):
        norm = float(np.linalg.norm(vector))
        if norm:
            at, sims = liveitems.similar(ov, vector / norm, item_id, k)
            found += [
                Recommendation(ov.records[i].item_id, float(s), 0)
                for i, s in zip(at.tolist(), sims.tolist(), strict=True)
            ]
            found = sorted(found, key=lambda r: -r.score)[:k]
    return found, []


@router.get(
    "/{item_id:path}/similar",
    response_model=SimilarResponse,
    responses={404: {"description": "unknown item"}},
)
async def similar(
    item_id: Annotated[Id, Path(max_length=256)],
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    live: LiveDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SimilarResponse:
    check_query(request, {"k"})
    rec = await require_model(state)
    ov, warnings = await live_api.overlay_for(live, rec, settings)
    answer = _similar_rows(rec, ov, item_id, k)
    if answer is None:
        raise HTTPException(
            404, f"item {truncate(item_id)!r} is not in the catalog of model {rec.version}"
        )
    found, why = answer
    return SimilarResponse(
        item_id=item_id,
        model_version=rec.version,
        items=[
            item_out(rec, r, i + 1, None, live_api.attributes(rec, ov, r))
            for i, r in enumerate(found)
        ],
        warnings=warnings + why,
    )


def _live_or_503(request: Request) -> LiveSync:
    live = live_api.get_live(request)
    if live is None:
        raise HTTPException(503, "no item store is configured (LMREC_ITEM_STORE)")
    return live


def _items_of(body: Any) -> list[dict]:
    """One item ({"item_id": ...}) or a batch ({"items": [...]}), each a JSON object of
    item_id, fields (column -> string or number) and available; 422 otherwise."""
    if isinstance(body, dict) and set(body) == {"items"}:
        body = body["items"]
    elif isinstance(body, dict):
        body = [body]
    if not isinstance(body, list):
        raise ItemInvalid(
            'the body is one item {"item_id": ..., "fields": {...}} or {"items": [...]}'
        )
    for item in body:
        if not isinstance(item, dict):
            raise ItemInvalid("each item must be a JSON object")
        extra = set(item) - {"item_id", "fields", "available"}
        if extra:
            raise ItemInvalid(
                f"unknown keys {sorted(extra)[:5]}: an item has item_id, fields, available"
            )
        if not isinstance(item.get("fields", {}), dict):
            raise ItemInvalid(f"item {str(item.get('item_id'))[:64]!r}: fields must be an object")
        if not isinstance(item.get("available", True), bool):
            raise ItemInvalid(
                f"item {str(item.get('item_id'))[:64]!r}: available must be true or false"
            )
    return body


async def _poll_if_unknown(
    rec: Recommender, live: LiveSync, settings: Settings, item_ids: list[str]
) -> None:
    """Wait (bounded) for a poll of the item store when an id is neither in this instance's
    records nor in the model's catalog: it may have been added on another instance since."""
    if any(i not in live.records and not rec.catalog.row(i) for i in item_ids):
        wait = settings.user_store_deadline_seconds
        await run_in_threadpool(lambda: live.start().join(wait))


def _records(rec: Recommender, live: LiveSync, items: list[dict]) -> list[ItemRecord]:
    """The new version of each item: first-stored time kept, update time after the last."""
    stamp, out = now_ms(), []
    for item in items:
        old = live.records.get(item["item_id"])
        available = item["available"] if item["available"] is not None else True
        fields = item["fields"]
        if fields is None:  # {"item_id", "available"} alone changes availability, not fields
            fields = old.fields if old else _catalog_fields(rec, rec.catalog.row(item["item_id"]))
        out.append(
            ItemRecord(
                item_id=item["item_id"],
                fields=fields,
                available=available,
                added_ms=old.added_ms if old else stamp,
                updated_ms=max(stamp, old.updated_ms + 1) if old else stamp,
            )
        )
    return out


def _check_cap(rec: Recommender, live: LiveSync, records: list[ItemRecord]) -> None:
    ov = live.overlay(rec)
    fresh = [
        r.item_id
        for r in records
        if r.item_id not in ov.index and rec.catalog.row(r.item_id) is None
    ]
    if fresh and len(ov) + ov.over_cap + len(fresh) > liveitems.MAX_LIVE:
        raise HTTPException(
            409,
            f"{len(ov) + ov.over_cap} items are already served beside model {rec.version} "
            f"(at most {liveitems.MAX_LIVE}): retrain to take them into the model first",
        )


async def _store(rec: Recommender, live: LiveSync, settings, records: list[ItemRecord]):
    try:
        await run_in_threadpool(live.store.put, records)
    except ItemStoreUnavailable:
        raise HTTPException(
            503,
            "the item store did not take the items; none or some are stored: send the same "
            "request again (it is idempotent)",
        ) from None
    live.remember(records)
    ov = live.overlay(rec)
    results = []
    for r in records:
        in_model = rec.catalog.row(r.item_id) is not None
        status = "unavailable" if not r.available else ("updated" if in_model else "added")
        results.append(
            ItemResult(
                item_id=r.item_id, status=status, in_model=in_model, scored=in_model or ov.scored
            )
        )
    warnings = []
    if not ov.scored and any(not x.in_model for x in results):
        warnings.append(
            f"model {rec.version} has no content part: new items are stored and shown "
            "(filters, attributes) but not recommended until a model knows them"
        )
    bound = settings.item_max_stale_seconds + 1.0  # + one poll's Query
    return ItemsResponse(
        stored=len(records), items=results, visible_within_seconds=bound, warnings=warnings
    )


@router.put("", response_model=ItemsResponse, responses={409: {"description": "overlay full"}})
async def put_items(
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    caller: CallerDep,
    body: Annotated[Any, Body()],
) -> ItemsResponse:
    """Add or change items (one, or up to 100 as {"items": [...]}); all or nothing: one bad
    item refuses the batch (422 names it). Columns are the serving catalog's."""
    require_service(caller)
    live = _live_or_503(request)
    rec = await require_model(state)
    try:
        items = check_items(_items_of(body), rec.catalog.columns)
    except ItemInvalid as exc:
        raise HTTPException(422, str(exc)) from None
    # fields kept from a record this instance may not have seen yet (PUT on another one)
    await _poll_if_unknown(
        rec, live, settings, [i["item_id"] for i in items if i["fields"] is None]
    )
    records = _records(rec, live, items)
    _check_cap(rec, live, records)
    return await _store(rec, live, settings, records)


@router.delete(
    "/{item_id:path}",
    response_model=ItemsResponse,
    responses={404: {"description": "unknown item"}},
)
async def delete_item(
    item_id: Annotated[Id, Path(max_length=256)],
    request: Request,
    state: StateDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> ItemsResponse:
    """Make an item unavailable: never recommended, ranked or similar again (within the
    bound), still read in histories. Its record stays (PUT available=true restores it)."""
    require_service(caller)
    live = _live_or_503(request)
    rec = await require_model(state)
    await _poll_if_unknown(rec, live, settings, [item_id])
    old = live.records.get(item_id)
    row = rec.catalog.row(item_id)
    if old is None and row is None:
        raise HTTPException(
            404, f"item {truncate(item_id)!r} is neither in model {rec.version} nor stored"
        )
    fields = old.fields if old else _catalog_fields(rec, row)
    item = {"item_id": item_id, "fields": fields, "available": False}
    return await _store(rec, live, settings, _records(rec, live, [item]))


def _catalog_fields(rec: Recommender, row: int | None) -> dict:
    """A catalog item's fields as a record holds them (categories "|"-joined)."""
    out = rec.catalog.fields(row) if row else {}
    column = rec.catalog.category_column
    if column and isinstance(out.get(column), list):
        out[column] = "|".join(out[column])
    return out
