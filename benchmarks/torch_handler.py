"""The comparison point for benchmarks/api_latency.py: the same student served the way a
user would otherwise write it, with torch in the Lambda (FastAPI + Mangum, model loaded at
import from the same S3 bundle). Not part of the product."""

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from fastapi import FastAPI
from lmrec import store
from lmrec.bundle import weights_file
from lmrec.items import read as read_items
from mangum import Mangum
from pydantic import BaseModel
from safetensors.torch import load_file

from training.config import ModelConfig
from training.model import SASRec

_root = os.environ["LMREC_STORE_URI"].rstrip("/")
_name = os.environ.get("LMREC_MODEL_NAME", "lmrec")
_pointer = json.loads(store.read_bytes(f"{_root}/models/{_name}/production.json"))
_dir = tempfile.mkdtemp(dir=os.environ.get("LMREC_CACHE_DIR", "/tmp"))
store.download(f"{_pointer['bundle_uri']}/manifest.json", f"{_dir}/manifest.json")
_manifest = json.loads(Path(f"{_dir}/manifest.json").read_text())
_weights = weights_file(_manifest)
for name in (_weights, "items.safetensors"):
    store.download(f"{_pointer['bundle_uri']}/{name}", f"{_dir}/{name}")
model = SASRec(ModelConfig(**_manifest["model"]["config"]))
model.load_state_dict(load_file(f"{_dir}/{_weights}"))
model.eval()
_items = list(read_items(Path(f"{_dir}/items.safetensors")).item_ids)
_row = {item: i + 1 for i, item in enumerate(_items)}

app = FastAPI()


class RecommendBody(BaseModel):
    history: list[str]
    k: int = 10


@app.post("/v1/recommendations")
def recommend(body: RecommendBody) -> dict:
    rows = [_row[i] for i in body.history if i in _row][-model.cfg.max_len :]
    with torch.no_grad():
        scores = model.score(torch.tensor([rows or [0]]))[0]
        scores[torch.tensor(rows, dtype=torch.long)] = float("-inf")
        top = torch.topk(scores, body.k)
    return {
        "items": [
            {"item_id": _items[int(r) - 1], "score": float(s)}
            for s, r in zip(top.values, top.indices, strict=True)
        ],
        "loaded_at": time.time(),
    }


handler = Mangum(app, lifespan="off")
