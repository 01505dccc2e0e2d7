"""Cold items: how well the model recommends items it never saw in training, from their
catalog columns alone, against a content-only TF-IDF baseline and popularity; and the warm
figures of the same job against the job without content. Prints one JSON document.

    PYTHONPATH=layers/core:. python benchmarks/cold_items.py \\
        --data ../shared/data/ml-100k --work runs/cold --set epochs=20 --set student_epochs=20

Protocol (stated in the output):
- cold items: the newest `--cold-share` of the catalog's items by first interaction (at most
  `--cold-cap`), the way new items arrive; every interaction with them is removed before
  training, and the spec of the content columns is inferred without them.
- the job (python -m training train) trains on the rest, with content and, for the warm
  comparison, without (`content=off`: today's model); each run's own leave-one-out test
  figures are its warm figures.
- cold evaluation, one case per user who interacted with a cold item: the target is that
  user's first cold item, the history the user's warm items before it (cold ones the model
  never saw dropped). Every catalog item is ranked (full ranking, warm and cold): a warm
  item by the bundle's row (id + content), a cold one by the serving path,
  lmrec.content.vectors(featurise(spec, [row]), content.weight), its id part zero. Items of
  the history excluded; ties broken at random (seeded). NDCG@10, HR@10, 95% intervals by
  training.evaluate.ci95.
- baselines on the same cases: TF-IDF (the same hashed features, idf-weighted and L2
  normalised; the user profile is the sum of the history items' vectors; cosine) and
  popularity (training counts: cold items have none).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lmrec import bundle as bundle_fmt
from lmrec import content
from lmrec.student import NumpySASRec, dequantize_items
from quality import machine

from training.baselines import tfidf
from training.config import set_argument
from training.evaluate import ci95
from training.item_content import catalog_rows

K = 10


def cold_items(inter: pd.DataFrame, share: float, cap: int) -> set[str]:
    first = inter.groupby("item_id", sort=False)["timestamp"].min()
    first = first.sort_values(kind="stable")
    n = min(cap, math.ceil(share * len(first)))
    return set(first.index[len(first) - n :])


def cases(inter: pd.DataFrame, cold: set[str]) -> list[tuple[list[str], str]]:
    """(warm history, first cold item) per user who has one."""
    out = []
    ordered = inter.sort_values(["user_id", "timestamp"], kind="stable")
    for _, rows in ordered.groupby("user_id", sort=True):
        items = rows["item_id"].tolist()
        at = next((i for i, item in enumerate(items) if item in cold), None)
        if at is None:
            continue
        history = [item for item in items[:at] if item not in cold]
        if history:
            out.append((history, items[at]))
    return out


def ranks(scores: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0-based rank of each target, ties broken uniformly at random."""
    t = scores[np.arange(len(scores)), targets][:, None]
    above = (scores > t).sum(1)
    ties = (scores == t).sum(1) - 1
    return above + np.floor(rng.random(len(scores)) * (ties + 1)).astype(np.int64)


def case_ndcg(rank: np.ndarray) -> np.ndarray:
    """NDCG@K of each case from its target's 0-based rank (one relevant item)."""
    return np.where(rank < K, 1.0 / np.log2(rank + 2.0), 0.0)


def figures(rank: np.ndarray) -> dict:
    hit = (rank < K).astype(np.float64)
    ndcg = case_ndcg(rank)
    n = float(len(rank))
    return {
        f"ndcg@{K}": round(float(ndcg.mean()), 4),
        f"ndcg@{K}_ci95": [round(v, 4) for v in ci95(ndcg.sum(), (ndcg**2).sum(), n)],
        f"hr@{K}": round(float(hit.mean()), 4),
        f"hr@{K}_ci95": [round(v, 4) for v in ci95(hit.sum(), hit.sum(), n)],
        "median_rank": float(np.median(rank)) + 1.0,  # 1 = first
        "users": int(n),
    }


def _hide(scores: np.ndarray, histories: list[np.ndarray]) -> np.ndarray:
    for i, h in enumerate(histories):
        scores[i, h] = -np.inf
    scores[:, 0] = -np.inf
    return scores


def evaluate_cold(
    model_dir: Path, data_dir: Path, work_cases, warm_seqs: list[list[str]], seed: int = 0
) -> dict:
    """Cold figures of the bundle in `model_dir` (student alone, and as served with its
    transitions), TF-IDF and popularity."""
    b = bundle_fmt.load(model_dir)
    spec = content.spec_from_manifest(b.manifest)
    if spec is None:
        raise SystemExit(f"{model_dir}: the bundle has no content")
    warm_ids = list(b.item_ids)
    catalog = pd.read_csv(data_dir / "items.csv", dtype=str, keep_default_na=False)
    catalog = catalog.set_index("item_id")
    cold_ids = sorted({target for _, target in work_cases} - set(warm_ids))
    cold_ids += sorted(set(catalog.index) - set(warm_ids) - set(cold_ids))  # whole catalog
    row_of = {item: i + 1 for i, item in enumerate([*warm_ids, *cold_ids])}
    _, cold_rows = catalog_rows(catalog.reindex(pd.Index(cold_ids, name="item_id")))
    table = b.weights["content.weight"]
    cold_vectors = content.vectors(content.featurise(spec, cold_rows), table)
    warm_table = dequantize_items(b.weights).astype(np.float32)
    full = np.concatenate([warm_table, cold_vectors]).astype(np.float32)
    model = NumpySASRec(b.weights, b.config)
    offset = content.new_item_offset(b.manifest)
    histories = [np.array([row_of[i] for i in h], dtype=np.int64) for h, _ in work_cases]
    targets = np.array([row_of[t] for _, t in work_cases], dtype=np.int64)
    hidden = np.concatenate(
        [model.encode(histories[i : i + 256]).hidden for i in range(0, len(histories), 256)]
    )
    rng = np.random.default_rng(seed)
    out = {"new_item_offset": offset}
    n_warm = len(warm_ids) + 1

    def scored(h: np.ndarray, lift: float) -> np.ndarray:  # as lmrec.liveitems scores
        return np.concatenate([h @ warm_table.T, content.new_item_scores(h, cold_vectors, lift)], 1)

    out["student_offset_0"] = figures(ranks(_hide(scored(hidden, 0.0), histories), targets, rng))
    student = _hide(scored(hidden, offset), histories)
    out["student"] = figures(ranks(student, targets, rng))
    if b.transitions is not None:  # as served: warm successors boosted, cold items never
        served = scored(hidden, offset)
        served[:, :n_warm] = b.transitions.add_to(served[:, :n_warm], histories)
        out["student+transitions"] = figures(ranks(_hide(served, histories), targets, rng))
    _, all_rows = catalog_rows(catalog.reindex(pd.Index([*warm_ids, *cold_ids])))
    items = tfidf(content.featurise(spec, [{}, *all_rows]), spec.n_buckets)
    profile = sp.csr_matrix(
        (
            np.ones(sum(len(h) for h in histories)),
            np.concatenate(histories),
            np.cumsum([0, *map(len, histories)]),
        ),
        shape=(len(histories), full.shape[0]),
    )
    tf = _hide(np.asarray((profile @ items @ items.T).todense()), histories)
    out["tfidf"] = figures(ranks(tf, targets, rng))
    pop = np.zeros(full.shape[0])
    pop[: len(b.popularity)] = b.popularity
    out["popularity"] = figures(
        ranks(_hide(np.tile(pop, (len(targets), 1)), histories), targets, rng)
    )
    out["catalog"] = {"warm": len(warm_ids), "cold": len(cold_ids), "ranked": full.shape[0] - 1}
    # Diagnosis: the same scores ranked among the cold items only (is the content part
    # telling new items apart, or only placing them as a group?)
    warm_cols = np.arange(n_warm)
    for name, scores in (("student", student), ("tfidf", tf)):
        scores[:, warm_cols] = -np.inf
        out[f"{name}_among_cold_only"] = figures(ranks(scores, targets, rng))
    seqs = [np.array([row_of[i] for i in seq], dtype=np.int64) for seq in warm_seqs]
    lifts = {"new_items_offset_0": 0.0, "new_items_offset": offset}
    out["warm_with_new_items"] = warm_beside_new(model, warm_table, cold_vectors, lifts, seqs)
    # The trade-off along the grid training chose from (the choice was made on valid)
    chosen = json.loads((model_dir / "metrics.json").read_text())["summary"].get("new_items", {})
    grid = {f"{g:g}": g for g in chosen.get("grid", [])}
    warm_at = warm_beside_new(model, warm_table, cold_vectors, grid, seqs)
    out["offset_sweep"] = [
        {
            "offset": g,
            "cold": figures(ranks(_hide(scored(hidden, g), histories), targets, rng)),
            "warm_with_new_items": warm_at[name],
        }
        for name, g in grid.items()
    ]
    return out


def warm_beside_new(model, warm_table, cold_vectors, lifts: dict, seqs) -> dict:
    """The price of the offset: each user's last warm interaction (the leave-one-out test
    target; earlier occurrences of it left out of the history: benchmarks/scale.py's data
    holds each user's last item in their first row too) ranked over the warm catalog alone,
    and with the new items beside it, scored as served at each of `lifts` (name -> offset;
    student alone, no transitions)."""
    hist, targets = [], []
    for seq in seqs:
        before = seq[:-1][seq[:-1] != seq[-1]]  # a history holding the target would hide it
        if len(before):
            hist.append(before)
            targets.append(seq[-1])
    t = np.asarray(targets, np.int64)
    hidden = np.concatenate(
        [model.encode(hist[i : i + 256]).hidden for i in range(0, len(hist), 256)]
    )
    warm_scores = hidden @ warm_table.T
    rng = np.random.default_rng(1)
    out = {"warm_only": figures(ranks(_hide(warm_scores.copy(), hist), t, rng))}
    for name, lift in lifts.items():
        s = np.concatenate([warm_scores, content.new_item_scores(hidden, cold_vectors, lift)], 1)
        out[name] = figures(ranks(_hide(s, hist), t, rng))
    return out


def warm(model_dir: Path) -> dict:
    doc = json.loads((model_dir / "metrics.json").read_text())
    keep = ("teacher", "student", "student_plain", "popularity")
    served = doc["summary"].get("served", {}).get("model")
    out = {}
    for name, block in doc["metrics"].items():
        if name in keep or "transitions" in name:
            full = block["test"]["full"]
            out[name] = {k: full[k] for k in full if k.startswith((f"ndcg@{K}", f"hr@{K}"))}
    out["served"] = served
    out["content"] = doc["summary"]["data"].get("content")
    return out


def train(data: Path, items: Path, out: Path, sets: list[str]) -> float:
    args = [sys.executable, "-m", "training", "train", "--data", str(data)]
    args += ["--items", str(items), "--output", str(out), "--fresh"]
    for s in sets:
        args += ["--set", s]
    began = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"training failed: {proc.stderr[-2000:]}")
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    return round(time.perf_counter() - began, 1)


def read_interactions(data: Path) -> pd.DataFrame:
    """interactions.csv, or interactions.parquet (a benchmarks/scale.py rung's), ids as strings."""
    if (data / "interactions.csv").exists():
        return pd.read_csv(data / "interactions.csv", dtype={"user_id": str, "item_id": str})
    if not (data / "interactions.parquet").exists() or not (data / "items.csv").exists():
        raise SystemExit(f"{data}: needs interactions.csv (or .parquet) and items.csv")
    inter = pd.read_parquet(data / "interactions.parquet")
    return inter.astype({"user_id": str, "item_id": str})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, required=True, help="folder: interactions.csv (or .parquet), items.csv"
    )
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--cold-share", type=float, default=0.1)
    p.add_argument("--cold-cap", type=int, default=2000)
    p.add_argument("--dropouts", default="0.3", help="content_id_dropout values, comma separated")
    p.add_argument("--no-baseline-run", action="store_true", help="skip the content=off run")
    p.add_argument("--reuse", action="store_true", help="evaluate runs already in --work")
    p.add_argument(
        "--set", action="append", default=[], type=set_argument, help="hyperparameter key=value"
    )
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    inter = read_interactions(a.data)
    cold = cold_items(inter, a.cold_share, a.cold_cap)
    train_csv = a.work / "train" / "interactions.csv"
    train_csv.parent.mkdir(exist_ok=True)
    inter[~inter["item_id"].isin(cold)].to_csv(train_csv, index=False)
    work_cases = cases(inter, cold)
    ordered = inter[~inter["item_id"].isin(cold)].sort_values(
        ["user_id", "timestamp"], kind="stable"
    )
    warm_seqs = [rows["item_id"].tolist() for _, rows in ordered.groupby("user_id", sort=True)]
    base = [*a.set, "num_threads=1", "progress=false"]
    result: dict = {
        "protocol": __doc__.split("Protocol (stated in the output):\n")[1].strip(),
        "data": str(a.data),
        "cold_items": len(cold),
        "cold_interactions_removed": int(inter["item_id"].isin(cold).sum()),
        "cold_cases": len(work_cases),
        "settings": base,
        "runs": {},
        "machine": machine(),
    }
    for p_drop in [float(x) for x in a.dropouts.split(",")]:
        out = a.work / f"content_{p_drop:g}"
        seconds = None
        if not (a.reuse and (out / "metrics.json").exists()):
            sets = [*base, f"content_id_dropout={p_drop}"]
            seconds = train(train_csv, a.data / "items.csv", out, sets)
        result["runs"][f"content_id_dropout={p_drop:g}"] = {
            "train_seconds": seconds,
            "cold": evaluate_cold(out, a.data, work_cases, warm_seqs),
            "warm": warm(out),
        }
    if not a.no_baseline_run:
        out = a.work / "content_off"
        seconds = None
        if not (a.reuse and (out / "metrics.json").exists()):
            seconds = train(train_csv, a.data / "items.csv", out, [*base, "content=off"])
        result["runs"]["content=off"] = {"train_seconds": seconds, "warm": warm(out)}
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
