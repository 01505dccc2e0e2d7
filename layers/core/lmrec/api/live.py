"""The live item overlay as the routes use it: a current view, attributes, warnings."""

from __future__ import annotations

import dataclasses

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from lmrec import liveitems
from lmrec.livesync import LiveSync
from lmrec.recommend import Filters, Recommendation, Recommender
from lmrec.settings import Settings


def get_live(request: Request) -> LiveSync | None:
    return getattr(request.app.state, "live", None)


async def overlay_for(
    live: LiveSync | None, rec: Recommender, settings: Settings
) -> tuple[liveitems.Overlay | None, list[str]]:
    """The overlay for this model, from a view no older than the bound when the store
    answers (else the last view, and a warning)."""
    if live is None:
        return None, []
    if live.stale():  # rare: an idle instance; wait (bounded) for a poll
        await run_in_threadpool(live.ensure_fresh, settings.user_store_deadline_seconds)
    else:
        live.ensure_fresh(0)  # starts a background poll when due, never waits
    ov = live.overlay(rec)
    warnings = []
    if live.stale():
        warnings.append(
            "the item store did not answer: items added or changed lately may be missing"
        )
    unscored = int(ov.available.sum()) if not ov.scored else 0
    if unscored:
        warnings.append(
            f"{unscored} items added after model {rec.version} are not scored: the model has "
            "no content part (they are served once a model trained with content, or on "
            "them, is promoted)"
        )
    return ov, warnings


async def hiding_unavailable(
    live: LiveSync | None, rec: Recommender, settings: Settings, filters: Filters
) -> tuple[liveitems.Overlay | None, Filters, list[str]]:
    """overlay_for, and `filters` that also exclude the catalog items made unavailable
    (DELETE /v1/items) and read the categories of catalog items changed by PUT from their
    records: every route that lists items asks this one."""
    ov, warnings = await overlay_for(live, rec, settings)
    if ov is not None:
        filters = dataclasses.replace(
            filters,
            exclude_rows=ov.hidden_rows,
            recategorised=liveitems.category_verdict(ov, filters),
        )
    return ov, filters, warnings


def changes_fields(ov: liveitems.Overlay | None) -> bool:
    """Whether the overlay shows any item differently from the model's catalog: new items,
    or catalog items changed by PUT /v1/items. (Not `bool(ov)`: an overlay's length counts
    new items only, so one holding only changed catalog items was falsy and their stored
    fields went unshown.)"""
    return ov is not None and (len(ov) > 0 or bool(ov.catalog_fields))


def attributes(rec: Recommender, ov: liveitems.Overlay | None, r: Recommendation) -> dict:
    """A reply item's display fields: a new item's record, a changed item's record, else the
    model's catalog."""
    if ov is not None and r.row == 0:
        return ov.attributes(ov.index[r.item_id], rec.catalog.category_column)
    if ov is not None and r.row in ov.catalog_fields:
        out = dict(ov.catalog_fields[r.row])
        column = rec.catalog.category_column
        if column and column in out:
            out[column] = liveitems.categories_of(out[column])
        return out
    return rec.catalog.fields(r.row)
