"""What a cold start pays to featurise live items: lmrec.liveitems.build over N new items
(featurise + content vectors + the overlay), the code under test against an older
lmrec/content.py, interleaved in one process so both meet the same load. Prints JSON.

    PYTHONPATH=layers/core:. nice .venv/bin/python benchmarks/live_featurise.py \\
        --bundle B --before /path/to/older/layers/core/lmrec/content.py --items 10000

B: a bundle with a content part (benchmarks/serving_scale.py --content on writes one). The
items are serving_scale.live_records (title, price, category); hashing caches are cleared
before every run, as in a fresh process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _module(path: str):
    spec = importlib.util.spec_from_file_location("content_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["content_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--before", required=True, help="an older lmrec/content.py")
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    from lmrec import content, liveitems
    from lmrec.recommend import Recommender
    from serving_scale import live_records

    rec = Recommender.load(a.bundle)
    records = live_records(a.items)
    codes = {"before": _module(a.before), "after": content}
    cpu: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(a.repeats):
        for name, module in codes.items():
            module._bucket.cache_clear()
            if hasattr(module, "_word_buckets"):
                module._word_buckets.cache_clear()
            liveitems.content = module  # the overlay featurises with this code
            began = time.process_time()
            overlay = liveitems.build(rec, records, {})
            cpu[name].append(time.process_time() - began)
            assert overlay.scored and len(overlay) == a.items
    print(
        json.dumps(
            {
                "bundle": a.bundle,
                "items": a.items,
                "repeats": a.repeats,
                "build_cpu_s_median": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
                "build_cpu_s_min": {k: round(min(v), 3) for k, v in cpu.items()},
                "load_after": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
