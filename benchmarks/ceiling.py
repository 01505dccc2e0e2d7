"""Where a rung's teacher stands: against the generator's own probabilities, step kind by kind.

    python benchmarks/ceiling.py --rung M --work runs/scale     # after benchmarks/scale.py

benchmarks/scale.py's generator knows why each interaction happened (a ring neighbour of the
previous item, a popular item of the user's cluster, a move to the next cluster), so the
test split can be scored three ways on the same users the training job evaluated (test,
full ranking, seen items excluded, NDCG@10 and HR@10):

- oracle: items ranked by their true probability under the generator (the ceiling);
- the job's teacher and the co-occurrence baseline, each overall and per step kind;
- mixture: (1 - w) * softmax(teacher) + w * co-occurrence scores normalised per user, w
  chosen on valid from a grid: what a teacher that also counted transitions would reach;
- when the job chose transitions (training/hybrid.py): the teacher with its boost at the
  job's weight, and the served model as the bundle serves it (numpy student + its table).

Prints one JSON object. Differences are paired (same users), with a 95% interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lmrec import bundle
from lmrec.student import NumpySASRec
from scale import MACHINE, RUNGS, Catalog, walk

from training import hybrid
from training.baselines import CoOccurrence
from training.config import DataConfig, ModelConfig, TrainConfig
from training.data import Interactions, load_interactions
from training.evaluate import Scorer, ci95, hide_seen
from training.model import SASRec
from training.split import EvalSet, Split, leave_one_out
from training.trainer import model_scorer

KINDS = {1: "move", 2: "neighbour", 3: "cluster_popular"}
WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0]
BATCH = 250


class Oracle:
    """P(next item) from the generator's state before the step: 0.1 a popular item of the
    next cluster in the user's direction, 0.45 a ring neighbour of the previous item
    (geometric steps), 0.45 a popular item of the current cluster."""

    def __init__(self, cat: Catalog, direction: np.ndarray, code_of: np.ndarray):
        self.cat, self.direction, self.code_of = cat, direction, code_of
        # Catalog.cdf at ring position p is its cluster's index plus the cumulative share of
        # popularity up to p inside the cluster; one item's share is the step.
        sizes = np.bincount(cat.cluster_of, minlength=cat.n_clusters)
        frac = cat.cdf - np.repeat(np.arange(cat.n_clusters), sizes)
        self.pop = np.diff(frac, prepend=0.0)
        self.pop[cat.start] = frac[cat.start]

    def _cluster(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.cat.start[c]
        z = int(self.cat.size[c])
        return self.cat.items[s : s + z], self.pop[s : s + z]

    def scores(self, user: int, cluster: int, prev: int, n_codes: int) -> np.ndarray:
        out = np.zeros(n_codes)
        items, p = self._cluster(cluster)
        np.add.at(out, self.code_of[items], 0.45 * p)
        nxt = (cluster + self.direction[user]) % self.cat.n_clusters
        items, p = self._cluster(nxt)
        np.add.at(out, self.code_of[items], 0.1 * p)
        items, _ = self._cluster(self.cat.cluster_of[prev])
        offset = (
            np.arange(len(items)) - (self.cat.pos[prev] - self.cat.start[self.cat.cluster_of[prev]])
        ) % len(items)
        steps = np.where(offset == 0, len(items), offset)  # geometric(0.5) steps wrap around
        np.add.at(out, self.code_of[items], 0.45 * 0.5**steps / (1 - 0.5 ** len(items)))
        out[0] = 0.0
        return out


def _histories(split: Split, ev: EvalSet) -> list[np.ndarray]:
    return [split.history(u, p) for u, p in zip(ev.users, ev.prefix_len, strict=True)]


def _teacher(model_dir: Path) -> Scorer:
    """The job's teacher, scoring as the job's evaluation does (training/trainer.py)."""
    try:
        cfg = ModelConfig(**json.loads((model_dir / "teacher_config.json").read_text()))
        state = load_file(model_dir / "teacher.safetensors")
        if "content.weight" in state:  # a rung written with --text, content_models=all
            raise ValueError(
                "its teacher reads the item catalog; the ceiling compares id teachers "
                "(train the rung without --text, or with --set content_models=student)"
            )
        model = SASRec(cfg)
        model.load_state_dict(state)
    except (ValueError, TypeError, RuntimeError, SafetensorError) as exc:  # JSON, keys, weights
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{model_dir} holds no readable teacher: {first}") from None
    return model_scorer(model, torch.device("cpu"))


def _job_models(model_dir: Path, split: Split, teacher: Scorer) -> dict[str, Scorer]:
    """The teacher with transitions at the job's weight, and the served model exactly as the
    bundle serves it (the numpy student plus the bundle's table); none for an older job."""
    summary = json.loads((model_dir / "metrics.json").read_text())["summary"]
    record = summary.get("transitions")
    if not record:
        return {}
    out: dict[str, Scorer] = {}
    if record["weight"].get("teacher"):
        weight = record["weight"]["teacher"]
        table = hybrid.build(split, record["min_users"], record["per_item"], weight)
        out["teacher+transitions"] = hybrid.with_transitions(teacher, table)
    served = bundle.load(str(model_dir))
    student = NumpySASRec(served.weights, served.config)
    boost = served.transitions
    out[f"served:{bundle.metric_label(summary['served'])}"] = (
        student if boost is None else hybrid.with_transitions(student, boost)
    )
    return out


def _softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(1, keepdims=True))  # padding's -inf becomes 0
    return e / e.sum(1, keepdims=True)


def _ndcg(scores: np.ndarray, hists: list[np.ndarray], targets: np.ndarray) -> np.ndarray:
    """Per-user NDCG@10 with seen items and padding excluded as the job excludes them (ties
    count against). Writes into `scores`, which every caller builds for this call alone: no
    copy of a users x catalog block per scoring."""
    hide_seen(scores, hists)
    rank = (scores > scores[np.arange(len(targets)), targets][:, None]).sum(1)
    return np.where(rank < 10, 1.0 / np.log2(rank + 2), 0.0)


def _interval(values: np.ndarray) -> list[float]:
    """The job's 95% interval of a mean of per-user values (training/evaluate.py)."""
    return [round(x, 4) for x in ci95(values.sum(), (values**2).sum(), len(values))]


def _summary(nd: np.ndarray) -> dict:
    return {
        "ndcg@10": round(float(nd.mean()), 4),
        "ci95": _interval(nd),
        "hr@10": round(float((nd > 0).mean()), 4),
    }


def _paired(a: np.ndarray, b: np.ndarray) -> dict:
    return {"diff": round(float((a - b).mean()), 4), "ci95": _interval(a - b)}


def _score_split(ev, hists, teacher, co, oracle_rows=None, extra=None) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {}
    for a in range(0, len(ev), BATCH):
        hb, tg = hists[a : a + BATCH], ev.targets[a : a + BATCH]
        for name, scorer in (extra or {}).items():
            out.setdefault(name, []).append(_ndcg(np.array(scorer(hb), np.float64), hb, tg))
        pt = _softmax(teacher(hb).astype(np.float64))
        c = co(hb).astype(np.float64)
        c[:, 0] = 0.0
        pc = c / c.sum(1, keepdims=True)
        for w in WEIGHTS:
            out.setdefault(f"mix{w}", []).append(_ndcg((1 - w) * pt + w * pc, hb, tg))
        if oracle_rows is not None:
            po = np.stack([oracle_rows(i) for i in range(a, a + len(hb))])
            out.setdefault("oracle", []).append(_ndcg(po, hb, tg))
    return {k: np.concatenate(v) for k, v in out.items()}


def _raw_rows(
    data: Interactions, ev: EvalSet, df_users: np.ndarray, df_items: np.ndarray, n_items: int
) -> np.ndarray:
    """Row of the generator's output behind each test target: the first (user, item) row,
    as the loader keeps it."""
    keys, first = np.unique(df_users * n_items + df_items, return_index=True)
    want = data.user_ids[ev.users].astype(np.int64) * n_items + data.item_ids[
        ev.targets - 1
    ].astype(np.int64)
    at = np.searchsorted(keys, want)
    if not (keys[at.clip(max=len(keys) - 1)] == want).all():
        raise SystemExit(
            "ceiling: the data is not this rung's generator output (wrong --rung or --seed)"
        )
    return first[at]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rung", default="M", choices=list(RUNGS))
    p.add_argument("--work", default="runs/scale", type=Path)
    p.add_argument("--seed", type=int, default=0, help="the generator's seed (scale.py --seed)")
    a = p.parse_args()
    n_users, n_items = RUNGS[a.rung]
    try:
        data = load_interactions(
            str(a.work / a.rung / "data" / "interactions.parquet"), DataConfig()
        )
        teacher = _teacher(a.work / a.rung / "model")
    except (OSError, ValueError) as exc:  # DataError is a ValueError
        raise SystemExit(f"ceiling: {exc}") from None
    df, hidden = walk(n_users, n_items, a.seed)
    split = leave_one_out(data)
    t = TrainConfig()
    split.sample_eval_users(t.eval_users, seed=t.seed + 3)  # the job's users (training/pipeline.py)
    test = split.evalset("test")
    rows = _raw_rows(data, test, df["user_id"].to_numpy(), df["item_id"].to_numpy(), n_items)
    co = CoOccurrence(split)

    valid = split.evalset("valid")
    v = _score_split(valid, _histories(split, valid), teacher, co)
    best_w = max(WEIGHTS, key=lambda w: v[f"mix{w}"].mean())

    code_of = np.zeros(n_items, np.int64)
    code_of[data.item_ids.astype(np.int64)] = np.arange(1, data.n_items + 1)
    oracle = Oracle(hidden["catalog"], hidden["direction"], code_of)
    users = df["user_id"].to_numpy()[rows]
    cl, prev = hidden["cluster"][rows], hidden["prev"][rows]
    extra = _job_models(a.work / a.rung / "model", split, teacher)
    r = _score_split(
        test,
        _histories(split, test),
        teacher,
        co,
        lambda i: oracle.scores(users[i], cl[i], prev[i], data.n_items + 1),
        extra,
    )
    models = {
        "oracle": r["oracle"],
        "teacher": r["mix0.0"],
        "cooccurrence": r["mix1.0"],
        f"mixture_w{best_w}": r[f"mix{best_w}"],
    } | {name: r[name] for name in extra}
    kind = hidden["kind"][rows]
    out = {
        "rung": a.rung,
        "machine": MACHINE,
        "protocol": f"test, full ranking, seen items excluded, {len(test)} users (the job sample)",
        "steps": {name: int((kind == k).sum()) for k, name in KINDS.items()},
        "mixture_weights_valid": {w: round(float(v[f"mix{w}"].mean()), 4) for w in WEIGHTS},
    }
    for name, nd in models.items():
        out[name] = _summary(nd) | {
            kn: _summary(nd[kind == k]) for k, kn in KINDS.items() if (kind == k).any()
        }
    out["teacher_minus_cooccurrence"] = _paired(models["teacher"], models["cooccurrence"])
    out["mixture_minus_cooccurrence"] = _paired(
        models[f"mixture_w{best_w}"], models["cooccurrence"]
    )
    for name in extra:
        out[f"{name}_minus_cooccurrence"] = _paired(models[name], models["cooccurrence"])
        out[f"{name}_minus_teacher"] = _paired(models[name], models["teacher"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
