"""Usage: python benchmarks/reply_items.py BUNDLE_DIR

Side by side: the reply's items built as before (per item: id->row lookup + decode of the
reason's fields) and now (reason rows from the model, titles decoded once per distinct reason)."""

import json
import sys
import time

import numpy as np
from lmrec.api.routes.recommendations import item_out, reason_titles
from lmrec.api.schemas import Reason, RecommendedItem
from lmrec.recommend import Filters, Recommender

from benchmarks.serving_scale import machine

rec = Recommender.load(sys.argv[1])
hist = np.arange(1, 31)
res = rec.recommend(hist, Filters(k=100, explain=True))


def old():
    out = []
    for i, r in enumerate(res.items):
        row = rec.catalog.row(r.reason)
        title = rec.catalog.fields(row).get("title") if row is not None else None
        out.append(
            RecommendedItem(
                item_id=r.item_id,
                score=r.score,
                rank=i + 1,
                attributes=rec.catalog.fields(r.row),
                reason=Reason(item_id=r.reason, title=title),
            )
        )
    return out


def new():
    titles = reason_titles(rec, res.items)
    return [item_out(rec, r, i + 1, titles) for i, r in enumerate(res.items)]


assert [o.model_dump() for o in old()] == [n.model_dump() for n in new()]
times = {"old": [], "new": []}
for _ in range(20):
    old()
    new()
for _ in range(400):
    for name, fn in (("old", old), ("new", new)):
        t = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - t)
med = {k: float(np.median(v)) * 1000 for k, v in times.items()}
print(
    json.dumps(
        {
            "machine": machine(),
            "items": rec.model.n_items,
            "k": 100,
            "distinct_reasons": len({r.reason for r in res.items}),
            "old_ms_p50": round(med["old"], 3),
            "new_ms_p50": round(med["new"], 3),
            "ratio": round(med["old"] / med["new"], 2),
        }
    )
)
