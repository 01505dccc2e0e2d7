"""Ways to rank new items above the scalar offset, each chosen on valid by the mixed
objective training/new_items.py uses, then measured on the cold protocol's test cases.

    PYTHONPATH=layers/core:. python benchmarks/cold_lift_study.py \\
        --work runs/cold --data ../shared/data/ml-100k > study.json

Reads the bundle benchmarks/cold_items.py trained in `--work` (content_<dropout>/) and the
same data. Valid, as in training: each user's second-to-last training item is the target,
the newest 10% of the training catalog by first interaction are scored as new (content
only, the serving path), every other item by its row; NDCG@10 over ALL valid users (hidden
history), the best grid point kept (the smallest on a tie). Test: the cold cases of
cold_items.py (full ranking, new items by content) and the warm leave-one-out targets with
the new items in the catalog. Every variant's new-item score is
    hidden @ content(i) + offset + term(u, i)
with the term one of:
  profile   w * cos(profile(u), content(i)); profile(u) = mean of the unit vectors of the
            user's last 50 history items, either their bundle rows ("row") or their content
            vectors ("content"; serving would need the history items' catalog fields)
  newest    a * share of the user's last 20 items among the newest 10% of the training
            catalog (a taste for recent items, but also "was this user active late": offline
            the latter is a leak, see docs/experiments.md)
  early     a * share of the user's last 20 events where the item was under 30 days old
            (since its first interaction) when consumed: an early-adopter taste, honest in
            production if event times are kept
  neighbours  alpha * hidden @ (mean row of the k known items nearest content(i) by cosine
            - content(i)): the new item borrows its neighbours' behaviour (id part) for its
            score (serving: one index query per new item, at overlay build)
  slot      per-user lift that puts the user's best new item at rank r (the exploration
            slot: r = 10 is liveitems.Explore with one slot of ten; `--explore` measures
            the slots as served instead, with the transitions, 1-3 slots of ten)
and a protocol check: "time-aware", the offset alone with an item ranked only for cases at
or after its first interaction (as in production, where an item exists once added).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cold_items as ci
from lmrec import bundle as bundle_fmt
from lmrec import content
from lmrec import transitions as transitions_mod
from lmrec.student import NumpySASRec, dequantize_items
from quality import machine

from training import new_items
from training.baselines import tfidf
from training.item_content import catalog_rows

QUANTILES = (0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9)  # training/new_items.py's offset grid
DAY = 86400.0


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Cases:
    """Histories (rows), targets, hidden states and event times of one set of cases."""

    def __init__(self, model, histories, targets, times, target_times):
        self.h = histories
        self.t = np.asarray(targets, np.int64)
        self.times = times  # per case, the history's event times
        self.at = np.asarray(target_times, np.float64)
        self.hidden = np.concatenate(
            [model.encode(histories[i : i + 256]).hidden for i in range(0, len(histories), 256)]
        )


Term = Callable[[Cases, np.ndarray], np.ndarray | float]


def _held_out(model, seqs: list[np.ndarray], times: list[np.ndarray], back: int) -> Cases:
    """Each sequence long enough to keep one item before its `back`-th last: that item is
    the target, everything before it the history."""
    keep = [i for i, s in enumerate(seqs) if len(s) > back]
    return Cases(
        model,
        [seqs[i][:-back] for i in keep],
        [seqs[i][-back] for i in keep],
        [times[i][:-back] for i in keep],
        [times[i][-back] for i in keep],
    )


class Study:
    def __init__(self, work: Path, data: Path, dropout: str, served: bool = False):
        b = bundle_fmt.load(work / f"content_{dropout}")
        self.manifest = b.manifest
        spec = content.spec_from_manifest(b.manifest)
        if spec is None:
            raise SystemExit("the bundle has no content part")
        table = b.weights["content.weight"]
        self.warm_ids = list(b.item_ids)
        n_warm = len(self.warm_ids) + 1
        self.table = dequantize_items(b.weights).astype(np.float32)
        self.transitions = b.transitions if served else None
        model = NumpySASRec(b.weights, b.config)
        catalog = pd.read_csv(data / "items.csv", dtype=str, keep_default_na=False)
        catalog = catalog.set_index("item_id")
        inter = ci.read_interactions(data)
        # as the job does with repeats dropped (the rungs; ML-100K has none): the first kept
        inter = inter.sort_values(["user_id", "timestamp"], kind="stable")
        inter = inter.drop_duplicates(["user_id", "item_id"], keep="first")
        cold = ci.cold_items(inter, 0.1, 2000)
        cases = ci.cases(inter, cold)
        cold_ids = sorted({t for _, t in cases})
        cold_ids += sorted(set(catalog.index) - set(self.warm_ids) - set(cold_ids))
        row = {x: i + 1 for i, x in enumerate([*self.warm_ids, *cold_ids])}

        def vectors(ids: list[str]) -> np.ndarray:
            _, rows = catalog_rows(catalog.reindex(pd.Index(ids, name="item_id")))
            return content.vectors(content.featurise(spec, rows), table)

        _, every = catalog_rows(catalog.reindex(pd.Index([*self.warm_ids, *cold_ids])))
        # cold_items.py's content-only baseline over the same rows (row 0 padding, empty)
        self.tfidf_items = tfidf(content.featurise(spec, [{}, *every]), spec.n_buckets)

        self.content_rows = np.concatenate(  # every item's content part, row 0 padding
            [np.zeros((1, table.shape[1]), np.float32), vectors([*self.warm_ids, *cold_ids])]
        )
        train = inter[~inter["item_id"].isin(cold)].sort_values(
            ["user_id", "timestamp"], kind="stable"
        )
        first = train.groupby("item_id")["timestamp"].min().sort_values(kind="stable")
        self.first_seen = np.full(len(row) + 1, np.inf)
        self.first_seen[[row[i] for i in first.index]] = first.to_numpy()
        cold_first = inter[inter["item_id"].isin(cold)].groupby("item_id")["timestamp"].min()
        self.first_seen[[row[i] for i in cold_first.index]] = cold_first.to_numpy()
        n_new = int(np.ceil(0.1 * len(first)))
        self.pseudo = np.array([row[i] for i in first.index[len(first) - n_new :]], np.int64)
        self.newest = np.zeros(len(row) + 1, bool)
        self.newest[self.pseudo] = True
        self.cold = np.arange(n_warm, len(row) + 1)
        seqs, times = [], []
        for _, rows in train.groupby("user_id", sort=True):
            seqs.append(np.array([row[i] for i in rows["item_id"]], np.int64))
            times.append(rows["timestamp"].to_numpy(np.float64))
        self.valid = _held_out(model, seqs, times, 2)  # the second-to-last item, as training
        self.warm = _held_out(model, seqs, times, 1)  # the last: the job's own test target
        ch, ct, cht, ctt = [], [], [], []
        for _, rows in inter.sort_values(["user_id", "timestamp"], kind="stable").groupby(
            "user_id", sort=True
        ):
            items, ts = rows["item_id"].tolist(), rows["timestamp"].to_numpy(np.float64)
            at = next((i for i, x in enumerate(items) if x in cold), None)
            keep = [j for j in range(at or 0) if items[j] not in cold]
            if at is None or not keep:
                continue
            ch.append(np.array([row[items[j]] for j in keep], np.int64))
            cht.append(ts[keep])
            ct.append(row[items[at]])
            ctt.append(ts[at])
        self.cold_cases = Cases(model, ch, ct, cht, ctt)
        self.n_cold_cases = len(cases)

    # --- the per-user terms (B, m) for a set of cases and new items
    def profile(self, c: Cases, space: str, n: int = 50) -> np.ndarray:
        src = self.table if space == "row" else self.content_rows
        return unit(np.stack([unit(src[h[-n:]]).mean(0) for h in c.h]))

    def newest_share(self, c: Cases, n: int = 20) -> np.ndarray:
        return np.array([self.newest[h[-n:]].mean() for h in c.h])

    def early_share(self, c: Cases, days: float = 30, n: int = 20) -> np.ndarray:
        ages = [t[-n:] - self.first_seen[h[-n:]] for h, t in zip(c.h, c.times, strict=True)]
        return np.array([(a < days * DAY).mean() for a in ages])

    def neighbours_term(self, k: int) -> Term:
        """hidden @ (mean row of the k known items nearest each new item - its content)."""
        n_warm = len(self.warm_ids) + 1
        pool = np.setdiff1d(np.arange(1, n_warm), self.pseudo)  # rows a new item may borrow
        cache: dict[int, np.ndarray] = {}

        def term(c: Cases, new: np.ndarray) -> np.ndarray:
            if int(new[0]) not in cache:
                sim = unit(self.content_rows[new]) @ unit(self.table[pool]).T
                top = np.argpartition(-sim, k, axis=1)[:, :k]
                cache[int(new[0])] = self.table[pool][top].mean(1) - self.content_rows[new]
            return c.hidden @ cache[int(new[0])].T

        return term

    def known(self, c: Cases) -> np.ndarray:
        """(B, N + 1) every item by its row, plus the transitions boost when served."""
        s = c.hidden @ self.table.T
        return s if self.transitions is None else self.transitions.add_to(s, c.h)

    def borrowed_term(self, k: int) -> Term:
        """The served boost a new item borrows: weight * log1p(mean over its k nearest known
        items by content cosine of the history's transition sums into them)."""
        t = self.transitions
        assert t is not None, "borrowed boosts need --served and a bundle with transitions"
        n_warm = len(self.warm_ids) + 1
        pool = np.setdiff1d(np.arange(1, n_warm), self.pseudo)
        near: dict[int, np.ndarray] = {}

        def term(c: Cases, new: np.ndarray) -> np.ndarray:
            if int(new[0]) not in near:
                sim = unit(self.content_rows[new]) @ unit(self.content_rows[pool]).T
                near[int(new[0])] = pool[np.argpartition(-sim, k, axis=1)[:, :k]]
            rows, items, sums = transitions_mod.recent_sums(
                t.indptr, t.cols, t.counts, c.h, t.recent, t.decay
            )
            dense = np.zeros((len(c.h), n_warm), np.float32)
            dense[rows, items] = sums
            dense[:, self.pseudo] = 0.0  # the pseudo-new items are in no pair when served
            return t.weight * np.log1p(dense[:, near[int(new[0])]].mean(2))

        return term

    def scores(self, c: Cases, new: np.ndarray, lift: float, term, time_aware: bool):
        """(B, N + 1) every item by its row, `new` (rows) by content + lift + term."""
        s = self.known(c)
        if new[0] >= len(s[0]):  # the cold rows follow the warm table
            s = np.concatenate([s, np.zeros((len(s), len(self.cold)), np.float32)], 1)
        s[:, new] = c.hidden @ self.content_rows[new].T + lift + term
        if time_aware:
            s[:, new] = np.where(self.first_seen[new][None] <= c.at[:, None], s[:, new], -np.inf)
        return ci._hide(s, c.h)

    def per_user(self, c: Cases, s: np.ndarray) -> np.ndarray:
        """Each case's NDCG@10 (ties broken as in `figures`, seed 0)."""
        r = ci.ranks(s, c.t, np.random.default_rng(0))
        return np.where(r < ci.K, 1.0 / np.log2(r + 2.0), 0.0)

    def figures(self, c: Cases, s: np.ndarray, seed: int) -> dict:
        return ci.figures(ci.ranks(s, c.t, np.random.default_rng(seed)))


def choose(st: Study, term: Term, time_aware: bool = False) -> dict:
    """The training grid (0 and quantiles over valid users of the lift their best new item
    needs to reach the top 10), the valid NDCG@10 at each, the chosen lift, and the test
    figures (cold cases, warm with new items) at every grid point."""
    v, new = st.valid, st.pseudo
    t = term(v, new)
    known = ci._hide(st.known(v), v.h)
    known[:, new] = -np.inf
    raw = v.hidden @ st.content_rows[new].T + t
    if time_aware:
        raw = np.where(st.first_seen[new][None] <= v.at[:, None], raw, -np.inf)
    need = np.partition(known, -ci.K, axis=1)[:, -ci.K] - raw.max(1)
    need = need[np.isfinite(need)]
    grid = sorted({0.0, *(float(np.quantile(need, q)) for q in QUANTILES)})
    grid = [g for g in grid if g >= 0.0]
    per_user = {g: st.per_user(v, st.scores(v, new, g, t, time_aware)) for g in grid}
    valid = {g: round(float(per_user[g].mean()), 4) for g in grid}
    best = max(grid, key=lambda g: (round(valid[g], 6), -g))
    rule, rule_gains = new_items.chosen(per_user, np.isin(v.t, new))
    gains = st.per_user(v, st.scores(v, new, best, t, time_aware)) - st.per_user(
        v, st.scores(v, new, 0.0, 0.0, time_aware)
    )
    points = []
    for g in grid:
        cold = st.scores(st.cold_cases, st.cold, g, term(st.cold_cases, st.cold), time_aware)
        warm = st.scores(st.warm, st.cold, g, term(st.warm, st.cold), time_aware)
        points.append(
            {
                "lift": round(g, 4),
                "valid_ndcg@10": valid[g],
                "cold": _short(st.figures(st.cold_cases, cold, 0)),
                "warm_with_new_items": _short(st.figures(st.warm, warm, 1)),
            }
        )
    return {
        "chosen_lift": round(best, 4),
        # training/new_items.py's rule: best on new targets, known targets not worse
        "rule_lift": round(rule, 4),
        "rule_vs_0": {k: [round(x, 4) for x in g] for k, g in rule_gains.items()},
        "valid_vs_offset_0": _paired(gains),  # the paired difference on the same valid users
        "points": points,
    }


def _paired(d: np.ndarray) -> list[float]:
    """Mean and 95% interval of a per-user difference."""
    half = 1.96 * float(d.std(ddof=1)) / np.sqrt(len(d))
    return [round(float(d.mean()) + x, 4) for x in (0.0, -half, half)]


def slot(st: Study, r: int) -> dict:
    """The best new item placed at rank r for every user (a per-user lift)."""

    def lifted(c: Cases, new: np.ndarray) -> np.ndarray:
        known = ci._hide(c.hidden @ st.table.T, c.h)
        if new[0] < known.shape[1]:
            known[:, new] = -np.inf
        raw = c.hidden @ st.content_rows[new].T
        return (np.partition(known, -r, axis=1)[:, -r] - raw.max(1) + 1e-4)[:, None]

    v = st.valid
    return {
        "valid_ndcg@10": st.figures(v, st.scores(v, st.pseudo, 0, lifted(v, st.pseudo), False), 0)[
            "ndcg@10"
        ],
        "cold": _short(
            st.figures(
                st.cold_cases,
                st.scores(st.cold_cases, st.cold, 0, lifted(st.cold_cases, st.cold), False),
                0,
            )
        ),
        "warm_with_new_items": _short(
            st.figures(st.warm, st.scores(st.warm, st.cold, 0, lifted(st.warm, st.cold), False), 1)
        ),
    }


def explore_ranks(
    s: np.ndarray,
    new: np.ndarray,
    targets: np.ndarray,
    n: int,
    young: np.ndarray | None = None,
) -> np.ndarray:
    """0-based rank of each target in the served top-k with `n` exploration slots, as
    lmrec.liveitems.merge builds it: the top-k of the served scores `s` (known and new items
    together), then, if fewer than n young items are in it, the best young items not shown
    take the last slots and the lowest others drop out. `young` (cases, len(new)) says which
    new items may fill a slot in each case (merge's age cut-off); None: every new item. A
    target outside the list gets rank k. Ties keep the catalog's order (a stable sort), not
    a random draw as `figures` does."""
    k = ci.K
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    out = np.full(len(s), k, np.int64)
    for i in range(len(s)):
        pool = new if young is None else new[young[i]]
        is_young = np.zeros(s.shape[1], bool)
        is_young[pool] = True
        top = order[i].tolist()
        shown = [r for r in top if is_young[r]]
        extra: list[int] = []
        if n and len(shown) < n:
            ranked = pool[np.argsort(-s[i, pool], kind="stable")]
            extra = [int(r) for r in ranked if r not in shown and np.isfinite(s[i, r])]
            extra = extra[: n - len(shown)]
        if extra:
            others = [r for r in top if not is_young[r]]
            top = [r for r in top if r in shown or r in others[: k - len(extra) - len(shown)]]
            top += extra
        if targets[i] in top:
            out[i] = top.index(int(targets[i]))
    return out


def explore_study(st: Study, slots: tuple[int, ...] = (0, 1, 2, 3)) -> dict:
    """Cold cases and warm targets as served (known items with the bundle's transitions, new
    items by content + the bundle's offset) with 0..3 of the ten slots reserved for new
    items (`explore_share` 0.1 / 0.2 / 0.3); the warm cost paired against no slot."""
    record = st.manifest.get("new_items") or {}
    offset = float(record.get("offset", 0.0))
    out: dict = {"offset": offset, "points": {}}
    base = None
    for n in slots:
        row: dict = {}
        for name, c in (("cold", st.cold_cases), ("warm_with_new_items", st.warm)):
            s = st.scores(c, st.cold, offset, 0.0, False)
            ranks = explore_ranks(s, st.cold, c.t, n)
            figures = _short(ci.figures(ranks))
            figures.pop("median_rank")  # ranks past the list are all k here: no median
            row[name] = figures
            if name == "warm_with_new_items":
                ndcg = ci.case_ndcg(ranks)
                base = ndcg if base is None else base
                row["warm_minus_no_slot"] = _paired(ndcg - base) if n else [0.0, 0.0, 0.0]
        out["points"][f"slots_{n}"] = row
    return out


def tfidf_figures(st: Study, c: Cases, time_aware: bool) -> dict:
    """The content-only baseline on the cold cases (cold_items.py's: the history's summed
    TF-IDF rows, cosine, history hidden); time-aware: a new item ranked only at or after
    its first interaction, as the served scores are."""
    n = st.tfidf_items.shape[0]
    profile = sp.csr_matrix(
        (np.ones(sum(len(h) for h in c.h)), np.concatenate(c.h), np.cumsum([0, *map(len, c.h)])),
        shape=(len(c.h), n),
    )
    s = np.asarray((profile @ st.tfidf_items @ st.tfidf_items.T).todense())
    if time_aware:
        late = st.first_seen[st.cold][None] > c.at[:, None]
        s[:, st.cold] = np.where(late, -np.inf, s[:, st.cold])
    return _short(ci.figures(ci.ranks(ci._hide(s, c.h), c.t, np.random.default_rng(0))))


def explore_age_study(
    st: Study, ages_h: tuple[float, ...] = (72.0, 168.0, 720.0), slots: tuple[int, ...] = (1, 2)
) -> dict:
    """The exploration slots in time: a new item exists (is ranked at all) only at or after
    its first interaction, and fills a slot only while younger than the age cut-off
    (liveitems.Explore.max_age_s; 72 h by default), its age counted from its first
    interaction. Optimistic for the slots: in production an item exists from its PUT, before
    anyone takes it, so the young pool also holds items nobody has taken yet, and an item
    first taken by this case's own target (age 0) is in the pool here only because of it.
    TF-IDF is scored with the same existence rule (and without it, for comparison with
    cold_items.py's figure). Warm cost paired against no slot, both time-aware."""
    offset = float((st.manifest.get("new_items") or {}).get("offset", 0.0))
    c = st.cold_cases
    age_h = (c.at - st.first_seen[c.t]) / 3600.0
    out: dict = {
        "offset": offset,
        "tfidf_cold_time_aware": tfidf_figures(st, c, True),
        "tfidf_cold_untimed": tfidf_figures(st, c, False),
        # the most a slot under each cut-off can reach: cases whose target is that young
        "target_age_share": {
            f"{h:g}h": round(float((age_h <= h).mean()), 3) for h in (0, 24, 72, 168, 720)
        }
        | {"median_hours": round(float(np.median(age_h)), 1), "cases": len(age_h)},
    }
    sets = {"cold": st.cold_cases, "warm_with_new_items": st.warm}
    # per set, computed once: the served scores (explore_ranks only reads them), new items' ages
    scored = {name: st.scores(c, st.cold, offset, 0.0, True) for name, c in sets.items()}
    age_s = {name: c.at[:, None] - st.first_seen[st.cold][None] for name, c in sets.items()}
    base = {}
    for name, c in sets.items():
        ranks = explore_ranks(scored[name], st.cold, c.t, 0)
        base[name] = ci.case_ndcg(ranks)
        out[f"{name}_no_slot"] = _short(ci.figures(ranks)) | {"median_rank": None}
    for age in ages_h:
        for n in slots:
            row: dict = {}
            for name, c in sets.items():
                young = (age_s[name] >= 0) & (age_s[name] <= age * 3600.0)
                ranks = explore_ranks(scored[name], st.cold, c.t, n, young)
                ndcg = ci.case_ndcg(ranks)
                row[name] = _short(ci.figures(ranks)) | {"median_rank": None}
                row[f"{name}_minus_no_slot"] = _paired(ndcg - base[name])
                row[f"{name}_cases_with_a_young_item"] = int(young.any(1).sum())
            out[f"age_{age:g}h_slots_{n}"] = row
    return out


def served_study(st: Study, variants: dict[str, Term]) -> dict:
    return {
        "valid_users": len(st.valid.t),
        "valid_new_targets": int(np.isin(st.valid.t, st.pseudo).sum()),
        "cold_cases": len(st.cold_cases.t),
        "warm_users": len(st.warm.t),
        "transitions": st.transitions.parameters() if st.transitions else None,
        "variants": {name: choose(st, term) for name, term in variants.items()},
        "machine": machine(),
    }


def _short(f: dict) -> dict:
    return {k: f[k] for k in ("ndcg@10", "ndcg@10_ci95", "hr@10", "median_rank", "users")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, required=True, help="cold_items.py's --work folder")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--dropout", default="0.3", help="which content_<dropout> run")
    p.add_argument(
        "--served",
        action="store_true",
        help="known items with the bundle's transitions (as served); variants: the offset "
        "alone and new items borrowing their content neighbours' boost",
    )
    p.add_argument(
        "--explore",
        action="store_true",
        help="as served, with 0-3 of the ten slots reserved for new items (explore_share)",
    )
    p.add_argument(
        "--explore-age",
        action="store_true",
        help="the slots in time: new items ranked only once they exist, slots only for items "
        "younger than 72 h / 7 d / 30 d; TF-IDF under the same existence rule",
    )
    a = p.parse_args()
    try:
        st = Study(a.work, a.data, a.dropout, a.served or a.explore or a.explore_age)
    except bundle_fmt.BundleError as e:  # one line, not a traceback
        raise SystemExit(
            f"error: {e} (run benchmarks/cold_items.py with --work {a.work} first)"
        ) from None
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    if a.explore_age:
        print(json.dumps(explore_age_study(st) | {"machine": machine()}, indent=1))
        return
    if a.explore:
        print(json.dumps(explore_study(st) | {"machine": machine()}, indent=1))
        return
    zero: Term = lambda c, new: 0.0  # noqa: E731
    variants: dict[str, Term] = {"offset": zero}
    if a.served:
        for k in (3, 10, 30):
            variants[f"borrowed_k{k}"] = st.borrowed_term(k)
        print(json.dumps(served_study(st, variants), indent=1))
        return
    for space in ("row", "content"):
        for w in (2.0, 4.0, 8.0):
            variants[f"profile_{space}_w{w:g}"] = lambda c, new, s=space, w=w: (
                w * (st.profile(c, s) @ unit(st.content_rows[new]).T)
            )
    for k in (3, 10):
        variants[f"neighbours_k{k}_a1"] = st.neighbours_term(k)
    for a_ in (2.0, 4.0, 8.0):
        variants[f"newest_a{a_:g}"] = lambda c, new, a_=a_: a_ * st.newest_share(c)[:, None]
        variants[f"early_a{a_:g}"] = lambda c, new, a_=a_: a_ * st.early_share(c)[:, None]
    out: dict = {
        "work": str(a.work),
        "data": str(a.data),
        "valid_users": len(st.valid.t),
        "valid_new_targets": int(np.isin(st.valid.t, st.pseudo).sum()),
        "cold_cases": len(st.cold_cases.t),
        "warm_users": len(st.warm.t),
        "variants": {name: choose(st, term) for name, term in variants.items()},
        "slot": {f"r{r}": slot(st, r) for r in (10, 5, 3, 1)},
        "time_aware_offset": choose(st, zero, time_aware=True),
        "machine": machine(),
        "load_after": os.getloadavg(),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
