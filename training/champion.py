"""Champion/challenger: production's served model scored on the candidate's own test users.

The gate used to compare the candidate's test NDCG@10, measured on its data's split, with the
figure production measured on an older split: two different test sets, so a harder new split
could reject a better model and an easier one promote a worse one. Here the training job
loads production (the pointer models/<name>/production.json under LMREC_STORE_URI; the
bundle verified, every checksum, by lmrec.bundle) and scores it on the candidate's test
users, beside the candidate's own per-user figures from the job's one evaluation pass
(training/evaluation.py: the served small model with its transitions and history expert):

- production as it serves (lmrec.student, numpy): the student's scores over its whole
  catalog plus its transition boost (and history expert), and for a history with no item
  the model knows, its popularity list (the API's cold start when it serves popular; live
  trending counts cannot be replayed offline). A bundle with an item index
  serves an approximation of exactly this sum; the protocol ranks exactly, as the
  candidate's evaluation does. The candidate is measured with the float32 weights it
  trained (a bundle quantised to float16 or int8 serves scores within its rounding);
- the test split's protocol: full ranking, the user's seen items excluded, NDCG@10; ties
  with the target counted in expectation (no random draw, so no tie noise in a user's
  difference).

Item ids are matched by string. An item production does not know cannot be scored by it: it
ranks below every item production knows, and a test target production does not know is a
miss for production (NDCG 0): what the candidate learned about new items is its own gain.
History items production does not know are dropped before it scores, as its API drops them.

The record (metrics.json summary.champion, the manifest's "champion") holds both figures on
the same users and the per-user paired difference (candidate minus production) with its
95% interval; the promote function decides on it (lmrec.promote). A production that cannot
be read or scored is recorded as a problem and never fails the job.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lmrec import bundle as fmt
from lmrec import registry
from lmrec.content import RowLift, row_lift
from lmrec.history import HistoryExpert
from lmrec.items import ItemCatalog
from lmrec.student import NumpySASRec
from lmrec.transitions import Transitions

from training.evaluate import Scorer, ci95, expected_ndcg, hide_seen, scored_batches
from training.split import EvalSet, Split

log = logging.getLogger(__name__)

STORE_ENV, MODEL_ENV = "LMREC_STORE_URI", "LMREC_MODEL_NAME"
PROTOCOL = (
    "test split of the candidate's data; both models as they serve (numpy student + "
    "transition boost, history expert and new-item lift where the bundle has them; "
    "popularity for a history with no known item); full ranking, seen "
    "items excluded, NDCG@10 with ties in expectation; item ids matched by string: items "
    "production does not know rank below all it knows (a target it does not know is a miss)"
)


@dataclass
class Served:
    """A model as the API serves it, over its own item rows (column 0 = padding)."""

    model: NumpySASRec
    table: Transitions | None
    popularity: np.ndarray  # (n_items + 1,)
    history: HistoryExpert | None = None  # repeats kept: the user's own items boosted
    lift: RowLift | None = None  # the new-item offset on its content-only rows

    @classmethod
    def of(cls, bundle: fmt.Bundle) -> Served:
        model = NumpySASRec(bundle.weights, bundle.config)
        lift = row_lift(bundle.manifest, model.n_items)
        return cls(model, bundle.transitions, bundle.popularity, bundle.history, lift)

    def __call__(self, histories: list[np.ndarray]) -> np.ndarray:
        """(B, n_items + 1) float32 scores."""
        scores = np.empty((len(histories), self.model.n_items + 1), dtype=np.float32)
        warm = [i for i, h in enumerate(histories) if len(h)]
        if warm:
            known = [histories[i] for i in warm]
            part = self.model(known)
            for boost in (self.table, self.history, self.lift):
                if boost is not None:
                    boost.add_to(part, known)
            scores[warm] = part
        cold = [i for i, h in enumerate(histories) if not len(h)]
        scores[cold] = self.popularity
        scores[:, 0] = -np.inf
        return scores


def row_map(candidate_ids: Iterable[str], production: ItemCatalog) -> np.ndarray:
    """(n_candidate + 1,) production row of each candidate row by item id; 0 = unknown."""
    index = pd.Index(list(production.item_ids))  # production row r <-> item_ids[r - 1]
    at = index.get_indexer(pd.Index([str(i) for i in candidate_ids]))
    return np.concatenate([[0], np.where(at >= 0, at + 1, 0)]).astype(np.int64)


def in_rows(served: Served, to_rows: np.ndarray) -> Scorer:
    """`served` scoring histories given in the candidate's rows, its scores put back in them;
    candidate items it does not know get -inf (below every item it knows)."""
    known = np.flatnonzero(to_rows)

    def score(histories: list[np.ndarray]) -> np.ndarray:
        mapped = [to_rows[h][to_rows[h] > 0] for h in histories]  # unknown history items dropped
        theirs = served(mapped)
        out = np.full((len(histories), len(to_rows)), -np.inf, dtype=np.float32)
        out[:, known] = theirs[:, to_rows[known]]
        return out

    return score


def per_user_ndcg(
    scorer: Scorer, split: Split, evalset: EvalSet, batch_size: int = 512
) -> np.ndarray:
    """(U,) NDCG@10 of each evaluated user: full ranking, seen items excluded, ties with the
    target in expectation; a target scored -inf (not known to the model) is a miss."""
    out = np.zeros(len(evalset))
    for idx, histories, scores in scored_batches(scorer, split, evalset, batch_size=batch_size):
        hide_seen(scores, histories, split.exclude_seen)
        target = scores[np.arange(len(idx)), evalset.targets[idx]]
        above = np.count_nonzero(scores > target[:, None], axis=1)
        ties = np.count_nonzero(scores == target[:, None], axis=1) - 1
        out[idx] = np.where(np.isfinite(target), expected_ndcg(above, ties), 0.0)
    return out


def _figure(values: np.ndarray) -> dict:
    total, total_sq = float(values.sum()), float((values * values).sum())
    return {
        "ndcg@10": total / max(len(values), 1),
        "ndcg@10_ci95": ci95(total, total_sq, len(values)),
    }


def compare(
    ours: np.ndarray, production: Served, production_catalog: ItemCatalog, split: Split
) -> dict:
    """Production on the candidate's test users beside the candidate's own per-user NDCG@10
    there (`ours`, in evalset order), and the paired difference."""
    evalset = split.evalset("test")
    to_rows = row_map(split.data.item_ids, production_catalog)
    theirs = per_user_ndcg(in_rows(production, to_rows), split, evalset)
    diff = ours - theirs
    return {
        "users": len(evalset),
        "candidate": _figure(ours),
        "production": _figure(theirs),
        "difference": {
            "mean": float(diff.mean()) if len(diff) else float("nan"),
            "ci95": ci95(float(diff.sum()), float((diff * diff).sum()), len(diff)),
        },
        "items_unknown_to_production": int((to_rows[1:] == 0).sum()),
        "targets_unknown_to_production": int((to_rows[evalset.targets] == 0).sum()),
        "protocol": PROTOCOL,
    }


def measure(
    candidate: np.ndarray, split: Split, env: Mapping[str, str] = os.environ
) -> dict | None:
    """The champion record, or None when no model store is configured. `candidate`: the
    candidate's per-user test NDCG@10 (evalset order) from the job's evaluation pass.
    Whatever goes wrong with production (unreadable pointer, corrupt bundle, a bundle this
    runtime cannot score) is recorded under "problem" and the job goes on: the promote
    function then falls back to comparing each model's own test figure, and says so."""
    store_uri = env.get(STORE_ENV, "")
    if not store_uri:
        return None
    began = time.perf_counter()
    version = None
    try:
        current = registry.read_current(store_uri, env.get(MODEL_ENV) or "lmrec")
        if current.pointer is None:  # the promote function applies the first-model rule
            return {"production_version": None, "note": current.problem or "no production model"}
        version = current.pointer.model_version
        with tempfile.TemporaryDirectory() as cache:  # verified download, gone after scoring
            production = fmt.load(current.pointer.bundle_uri, cache)
            record = compare(candidate, Served.of(production), production.catalog, split)
    except Exception as exc:  # of any kind: production's state must not cost the candidate
        problem = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("production could not be scored on the test users (%s)", problem)
        return {"production_version": version, "problem": problem}
    return {
        "production_version": version,
        **record,
        "seconds": round(time.perf_counter() - began, 2),
    }


def for_job(candidate: np.ndarray, split: Split) -> dict | None:
    """The job's step: production against the candidate's per-user test figures as the job's
    evaluation measured them (the served small model with its table and history expert, the
    same users), on the candidate's split (recorded: the gate compares like with like)."""
    record = measure(candidate, split)
    if record is not None:
        record["split"] = split.name
    return record


def summary_line(record: dict | None) -> str | None:
    """One line for the job's log and the report; None when no store was configured."""
    if record is None:
        return None
    if "difference" in record:
        c, p, d = record["candidate"], record["production"], record["difference"]
        lo, hi = d["ci95"]
        return (
            f"against production {record['production_version']} on the same "
            f"{record['users']} test users: candidate {c['ndcg@10']:.4f}, production "
            f"{p['ndcg@10']:.4f}, difference {d['mean']:+.4f} [95% {lo:+.4f}, {hi:+.4f}]"
        )
    if record.get("problem"):
        return (
            f"production {record.get('production_version') or '(unreadable pointer)'} could not "
            f"be scored ({record['problem']}); the gate falls back to each model's own split"
        )
    return "no production model yet: the gate's first-model rule applies (beat popularity)"
