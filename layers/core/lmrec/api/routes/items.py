"""Similar items, from the student's item embeddings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from lmrec.api.deps import StateDep, require_model
from lmrec.api.routes.recommendations import item_out
from lmrec.api.schemas import Id, SimilarResponse
from lmrec.redact import truncate

router = APIRouter(prefix="/v1/items", tags=["items"])


@router.get(
    "/{item_id:path}/similar",
    response_model=SimilarResponse,
    responses={404: {"description": "unknown item"}},
)
async def similar(
    item_id: Annotated[Id, Path(max_length=256)],
    state: StateDep,
    k: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SimilarResponse:
    rec = await require_model(state)
    found = rec.similar(item_id, k)
    if found is None:
        raise HTTPException(
            404, f"item {truncate(item_id)!r} is not in the catalog of model {rec.version}"
        )
    return SimilarResponse(
        item_id=item_id,
        model_version=rec.version,
        items=[item_out(rec, r, i + 1) for i, r in enumerate(found)],
    )
