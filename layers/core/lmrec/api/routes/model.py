"""What is being served, and whether the service is healthy."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lmrec.api.deps import StateDep, refresh_when_due, require_model
from lmrec.api.schemas import Health, ModelInfo

router = APIRouter(tags=["model"])


@router.get("/v1/model", response_model=ModelInfo)
async def model_info(state: StateDep) -> ModelInfo:
    rec = await require_model(state)
    m = rec.bundle.manifest
    summary = {
        name: {"ndcg@10": v["test"]["full"]["ndcg@10"], "hr@10": v["test"]["full"]["hr@10"]}
        for name, v in m.get("metrics", {}).items()
    }
    return ModelInfo(
        model_version=m["model_version"],
        created_at=m["created_at"],
        data_fingerprint=m.get("data_fingerprint"),
        catalog_size=len(rec.catalog.item_ids),
        users=int(m.get("catalog", {}).get("n_users") or 0),
        item_table_dtype=m["model"].get("item_table_dtype", "float32"),
        metrics={"test_full": summary},
    )


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(state: StateDep):
    await refresh_when_due(state)
    body = state.health()
    # A load balancer should stop sending traffic only when nothing can be served.
    return JSONResponse(body, status_code=503 if body["status"] == "unavailable" else 200)
