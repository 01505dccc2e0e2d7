"""Training at a shop's scale: a seeded synthetic ladder, the real training entry on each rung.

    nice python benchmarks/scale.py --rungs S M [--work runs/scale] [--set key=value ...]
    nice python benchmarks/scale.py --step-only          # teacher step time, M and L side by side

Rungs (users / items / interactions, before the loader drops repeated (user, item) pairs):
S 10k / 4.8k / ~116k, M 100k / 76k / ~1.2M, L 1M / 671k / ~12.6M.

The data has a real sequential signal, so quality means something: items sit in clusters along
a ring, item popularity is Zipf-like inside and across clusters, each user starts in a
cluster drawn by popularity and drifts along the ring in their own direction (10% of steps),
and half of the steps take a near neighbour of the previous item (the rest a popular item of
the current cluster). History lengths are long-tailed (lognormal, at least 2, mean ~12).

Each rung runs `python -m training train` with defaults (nothing but progress bars off and
the data path), then prints one JSON line: per-phase seconds and peak RSS (from the job's
metrics.json), the whole process's peak RSS (from wait4), bundle size, and quality:
full-ranking test NDCG@10 with its 95% CI and the number of users, for the teacher, the
served student, popularity and co-occurrence.

`--text` also writes the rung's item catalog, items.csv, beside the interactions (see
`item_text`; its own random stream, so the interactions stay bit-identical and the ladder's
figures comparable); the ladder's runs do not read it (no --items): benchmarks/cold_items.py
does (`--data <work>/<rung>/data`).

`--timeline spread` restamps the same rows for `--set split=time`. The ladder's own stamps
(1.6e9 + 7 s x user + 1 h x step) have users arrive 7 s apart and live about 15 hours each,
so at L (1M users, 81 days of arrivals) almost no user has a row before the time split's
valid cut-off and another after its test cut-off (32 evaluated users). With `spread` each
user starts at a uniform time in the first 60% of a 180-day period and their rows are evenly
spaced until a uniform end in the rest of it (`spread_times`; its own random stream): every
user's order, hence every row and the leave-one-out split, stays the ladder's; what reads
absolute time differs (recent popularity, the order of the newest items, the data's
fingerprint, so no checkpoint of the ladder's resumes). Written as interactions-spread.parquet
beside the ladder's file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from lmrec.bundle import metric_label
from serving_scale import machine  # benchmarks/ is on sys.path when run as a script

from training.config import set_argument

REPO = Path(__file__).resolve().parents[1]
RUNGS = {"S": (10_000, 4_800), "M": (100_000, 76_000), "L": (1_000_000, 671_000)}
MACHINE = machine()  # this machine's CPU and memory, read at start (not a fixed string)


def _lengths(rng: np.random.Generator, n_users: int) -> np.ndarray:
    raw = rng.lognormal(mean=2.0, sigma=0.9, size=n_users)
    return np.clip(np.round(raw) + 1, 2, 2_000).astype(np.int64)


class Catalog:
    """Items in clusters along a ring; Zipf-like popularity; within-cluster order = ring."""

    def __init__(self, rng: np.random.Generator, n_items: int, per_cluster: int = 60):
        self.n_items = n_items
        self.n_clusters = max(2, n_items // per_cluster)
        cluster = rng.integers(0, self.n_clusters, size=n_items)
        order = np.lexsort((rng.random(n_items), cluster))  # items grouped by cluster
        self.items = order  # position p in the ring holds item items[p]
        self.cluster_of = cluster
        sizes = np.bincount(cluster, minlength=self.n_clusters)
        self.start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.size = np.maximum(sizes, 1)
        self.pos = np.empty(n_items, np.int64)
        self.pos[order] = np.arange(n_items)
        weight = 1.0 / (rng.permutation(n_items) + 10.0)  # Zipf-like, exponent 1
        w = weight[order]
        # Cumulative weight inside each cluster, shifted by the cluster's index, so one
        # searchsorted draws an item of any given cluster by popularity.
        csum = np.cumsum(w)
        base = np.repeat(csum[self.start] - w[self.start], sizes)
        total = np.repeat(np.add.reduceat(w, self.start), sizes)
        self.cdf = np.repeat(np.arange(self.n_clusters), sizes) + (csum - base) / total
        self.cluster_pop = np.add.reduceat(w, self.start) / w.sum()

    def popular_in(self, rng: np.random.Generator, clusters: np.ndarray) -> np.ndarray:
        u = clusters + rng.random(len(clusters)) * 0.999999
        return self.items[np.searchsorted(self.cdf, u).clip(max=self.n_items - 1)]

    def neighbour(self, rng: np.random.Generator, items: np.ndarray) -> np.ndarray:
        c = self.cluster_of[items]
        step = rng.geometric(0.5, size=len(items))
        off = (self.pos[items] - self.start[c] + step) % self.size[c]
        return self.items[self.start[c] + off]


def synthesize(n_users: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    return walk(n_users, n_items, seed)[0]


def walk(n_users: int, n_items: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """The interactions, and per row the generator's hidden state (for benchmarks/ceiling.py):
    kind (0 first row, 1 moved to the next cluster, 2 ring neighbour, 3 popular in the
    cluster), the row's step in its user's walk, the user's cluster before the step and the
    previous item; plus the catalog and each user's direction."""
    rng = np.random.default_rng(seed)
    cat = Catalog(rng, n_items)
    lengths = _lengths(rng, n_users)
    cluster = rng.choice(cat.n_clusters, size=n_users, p=cat.cluster_pop)
    direction = rng.choice([-1, 1], size=n_users)
    prev = cat.popular_in(rng, cluster)
    # The first row holds `prev` itself, which the walk then overwrites: each user's first row
    # carries their LAST item, whose real last row the loader then drops as a repeat. A quirk
    # of the first version of this generator, kept so every published rung figure stays
    # reproducible; it costs each history one uninformative first item.
    users_out, items_out = [np.arange(n_users)], [prev]
    steps_out = [np.zeros(n_users, np.int64)]
    kinds, clusters, prevs = [np.zeros(n_users, np.int8)], [cluster.copy()], [prev.copy()]
    for step in range(1, int(lengths.max())):
        active = np.flatnonzero(lengths > step)
        clusters.append(cluster[active])
        prevs.append(prev[active])
        move = rng.random(len(active)) < 0.1
        cluster[active[move]] = (cluster[active[move]] + direction[active[move]]) % cat.n_clusters
        near = (rng.random(len(active)) < 0.5) & ~move
        nxt = cat.popular_in(rng, cluster[active])
        nxt[near] = cat.neighbour(rng, prev[active[near]])
        prev[active] = nxt
        kinds.append(np.where(move, 1, np.where(near, 2, 3)).astype(np.int8))
        users_out.append(active)
        items_out.append(nxt)
        steps_out.append(np.full(len(active), step, np.int64))
    users, steps = np.concatenate(users_out), np.concatenate(steps_out)
    df = pd.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "item_id": np.concatenate(items_out).astype(np.int64),
            "timestamp": 1_600_000_000 + users * 7 + steps * 3_600,
        }
    )
    hidden = {
        "kind": np.concatenate(kinds),
        "step": steps,
        "cluster": np.concatenate(clusters),
        "prev": np.concatenate(prevs),
        "catalog": cat,
        "direction": direction,
    }
    return df, hidden


SYLLABLES = [c + v for c in "bdfghklmnprstvzjw" for v in "aeiou"]  # 85: 85**3 > 614k words
NOISE_WORDS = 40  # words any title may hold, whatever its cluster


def _words(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct made-up words of three syllables ("kovami"): no real word's meaning leaks."""
    s = len(SYLLABLES)
    codes = rng.choice(s**3, size=n, replace=False)
    syl = np.asarray(SYLLABLES)
    return np.char.add(np.char.add(syl[codes // s**2], syl[codes // s % s]), syl[codes % s])


def item_text(cat: Catalog, seed: int = 0, per_cluster: int = 6, own: float = 0.7) -> pd.DataFrame:
    """An item catalog whose content carries the item's cluster but not its place on the ring.

    title: 3-5 words, each from the cluster's own `per_cluster` words with probability `own`,
    else from NOISE_WORDS shared by all; group: the cluster's coarse group (8 neighbouring
    clusters; the coarsest ring information a shop's category tree holds), plus a random
    second group for 30% of the items ("g12|g40"); price: lognormal around a per-cluster
    level (weakly informative). Drawn from its own stream (seed, 1): the walk's is untouched.
    """
    rng = np.random.default_rng([seed, 1])
    n, c = cat.n_items, cat.cluster_of
    words = _words(rng, cat.n_clusters * per_cluster + NOISE_WORDS)
    vocab, noise = words[:-NOISE_WORDS].reshape(cat.n_clusters, per_cluster), words[-NOISE_WORDS:]
    length = rng.integers(3, 6, size=n)
    slots = np.where(
        rng.random((n, 5)) < own,
        vocab[c[:, None], rng.integers(0, per_cluster, (n, 5))],
        noise[rng.integers(0, NOISE_WORDS, (n, 5))],
    )
    titles = [" ".join(row[:k]) for row, k in zip(slots.tolist(), length.tolist(), strict=True)]
    n_groups = -(-cat.n_clusters // 8)
    group = np.char.add("g", (c // 8).astype(str))
    second = np.char.add("|g", rng.integers(0, n_groups, n).astype(str))
    groups = np.where(rng.random(n) < 0.3, np.char.add(group, second), group)
    level = rng.normal(3.0, 0.8, cat.n_clusters)
    price = np.round(np.exp(level[c] + rng.normal(0, 0.5, n)), 2)
    return pd.DataFrame({"item_id": np.arange(n), "title": titles, "group": groups, "price": price})


PERIOD = 180 * 86_400  # seconds covered by the `spread` timeline


def spread_times(users: np.ndarray, steps: np.ndarray, n_users: int, seed: int) -> np.ndarray:
    """Timestamps that keep each user's order and spread every user over a long period: a
    start uniform in the first 60% of PERIOD, rows evenly spaced up to an end uniform between
    the start and PERIOD (at least half of what is left after the start). Stream (seed, 2):
    the walk's and the text's draws are untouched."""
    rng = np.random.default_rng([seed, 2])
    start = rng.uniform(0.0, 0.6, n_users) * PERIOD
    span = rng.uniform(0.5, 1.0, n_users) * (PERIOD - start)
    last_step = np.zeros(n_users, np.int64)
    np.maximum.at(last_step, users, steps)
    gap = span / np.maximum(last_step, 1)  # >= 0.2 * PERIOD / 2,000 steps: over an hour
    return 1_600_000_000 + (start[users] + gap[users] * steps).astype(np.int64)


def data_name(timeline: str) -> str:
    return "interactions.parquet" if timeline == "arrivals" else f"interactions-{timeline}.parquet"


def write_data(
    data_dir: Path, n_users: int, n_items: int, seed: int, text: bool, timeline: str = "arrivals"
) -> None:
    """The rung's interactions (and with `text`, items.csv), each unless present."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_file, items_file = data_dir / data_name(timeline), data_dir / "items.csv"
    if data_file.exists() and (items_file.exists() or not text):
        return
    df, hidden = walk(n_users, n_items, seed)
    if not data_file.exists():
        if timeline == "spread":
            users = df["user_id"].to_numpy()
            df["timestamp"] = spread_times(users, hidden["step"], n_users, seed)
        df.to_parquet(data_file, index=False)
    if text:
        item_text(hidden["catalog"], seed).to_csv(items_file, index=False)


def _child_peak_rss_mb(proc: subprocess.Popen) -> tuple[int, float]:
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024


def _interval(mean: float, ci: float | list[float]) -> list[float]:
    # [low, high]; a job from before the intervals were pairs recorded the half-width
    return [mean - ci, mean + ci] if isinstance(ci, float) else ci


def _quality(metrics: dict, name: str) -> dict | None:
    if name not in metrics:
        return None
    f = metrics[name]["test"]["full"]
    return {
        "ndcg@10": round(f["ndcg@10"], 4),
        "ci95": [round(x, 4) for x in _interval(f["ndcg@10"], f["ndcg@10_ci95"])],
        "users": f["users"],
    }


def run_rung(
    rung: str,
    work: Path,
    extra: list[str],
    seed: int,
    text: bool = False,
    timeline: str = "arrivals",
) -> dict:
    n_users, n_items = RUNGS[rung]
    data_dir = work / rung / "data"
    data_file = data_dir / data_name(timeline)
    began = time.perf_counter()
    write_data(data_dir, n_users, n_items, seed, text, timeline)
    synth_seconds = time.perf_counter() - began
    out = work / rung / "model"
    cmd = [sys.executable, "-m", "training", "train", "--data", str(data_file)]
    cmd += ["--output", str(out), "--set", "progress=false"]
    for item in extra:
        cmd += ["--set", item]
    log_path = work / rung / "train.log"
    began = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        code, peak = _child_peak_rss_mb(proc)
    wall = time.perf_counter() - began
    result: dict = {
        "rung": rung,
        "machine": MACHINE,
        "command": " ".join(cmd),
        "exit_code": code,
        "synthesis_seconds": round(synth_seconds, 1),
        "end_to_end_seconds": round(wall, 1),
        "peak_rss_mb": round(peak, 1),
    }
    if code != 0:
        result["log_tail"] = log_path.read_text()[-2000:]
        return result
    return result | job_figures(out)


def job_figures(out: Path) -> dict:
    """What a finished job's output says: phases, sizes, quality against the baselines."""
    doc = json.loads((out / "metrics.json").read_text())
    summary, metrics = doc["summary"], doc["metrics"]
    served_name = metric_label(summary["served"])
    # The served model against the teacher in the same form: with transitions, both boosted.
    boosted = summary["served"]["transitions_weight"]
    teacher_name = "teacher+transitions" if boosted else "teacher"
    if teacher_name not in metrics:
        teacher_name = "teacher"
    teacher, served = _quality(metrics, teacher_name), _quality(metrics, served_name)
    return {
        "data": {k: summary["data"][k] for k in ("raw_rows", "interactions", "users", "items")},
        "dropped": summary["data"].get("dropped"),
        "chosen": summary.get("chosen"),
        "phases": summary.get("phases"),
        "teacher_sequences_per_second": round(summary["sequences_per_second"], 1),
        "bundle_mb": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20, 1),
        "served": summary.get("served"),
        "served_why": summary.get("served_why"),
        "quality_protocol": doc.get("protocol", {}).get("split", "leave-one-out by time")
        + "; test, full ranking (seen items excluded), NDCG@10, mean over users with 95% CI "
        "(normal approximation)",
        "split": summary.get("split"),
        "quality": {
            name: _quality(metrics, name) for name in metrics if not name.endswith("_refit")
        },
        "transitions": summary.get("transitions"),
        "served_over": teacher_name,
        "served_over_teacher": round(served["ndcg@10"] / teacher["ndcg@10"], 3)
        if served and teacher
        else None,
    }


def step_times(rungs: list[str], steps: int, repeats: int) -> dict:
    """Median teacher step (sampled loss, sparse item table) per rung, interleaved so the
    rungs share the machine's state (rounds of `steps` steps, alternating rungs)."""
    import torch

    from training.config import ModelConfig
    from training.model import SASRec
    from training.optim import ModelOptimizer
    from training.sampling import NegativeSampler

    rng = np.random.default_rng(0)
    setups = {}
    for rung in rungs:
        n_items = RUNGS[rung][1]
        torch.manual_seed(0)
        model = SASRec(ModelConfig(n_items=n_items, d_model=64))  # the sampled loss's width
        counts = np.concatenate([[0], rng.zipf(1.5, n_items).clip(max=10**6)]).astype(float)
        setups[rung] = {
            "model": model,
            "opt": ModelOptimizer(model, 1e-3, 0.0, sparse_items=True, fused=True),
            "sampler": NegativeSampler(counts, torch.device("cpu")),
        }
    times: dict[str, list[float]] = {r: [] for r in rungs}
    for _ in range(repeats):
        for rung in rungs:
            s = setups[rung]
            n_items = RUNGS[rung][1]
            for _ in range(steps):
                seq = torch.from_numpy(rng.integers(1, n_items + 1, size=(256, 16)))
                x, y = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
                t0 = time.perf_counter()
                loss = s["model"](x, y, s["sampler"].draw(2048), s["sampler"].log_q)
                s["opt"].zero_grad()
                loss.backward()
                s["opt"].step()
                times[rung].append(time.perf_counter() - t0)
    med = {r: float(np.median(v)) * 1000 for r, v in times.items()}
    out = {"machine": MACHINE, "batch": "256 x 15 positions, 2,048 negatives, d_model 64"}
    out |= {f"median_step_ms_{r}": round(m, 2) for r, m in med.items()}
    if len(rungs) == 2:
        out[f"ratio_{rungs[1]}_over_{rungs[0]}"] = round(med[rungs[1]] / med[rungs[0]], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rungs", nargs="*", default=["S", "M"], choices=list(RUNGS))
    parser.add_argument("--work", default="runs/scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", action="append", default=[], type=set_argument, help="extra key=value"
    )
    parser.add_argument("--step-only", action="store_true")
    parser.add_argument("--text", action="store_true", help="also write items.csv (item_text)")
    parser.add_argument("--data-only", action="store_true", help="write the rungs' data, stop")
    parser.add_argument(
        "--timeline",
        choices=("arrivals", "spread"),
        default="arrivals",
        help="the ladder's timestamps, or every user spread over 180 days (for split=time)",
    )
    parser.add_argument("--report-only", action="store_true", help="read finished rungs' output")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.step_only:
        print(json.dumps(step_times(["M", "L"], args.steps, args.repeats)), flush=True)
        return
    for rung in args.rungs:
        if args.data_only:
            n_users, n_items = RUNGS[rung]
            data = Path(args.work) / rung / "data"
            write_data(data, n_users, n_items, args.seed, args.text, args.timeline)
            continue
        if args.report_only:
            figures = {"rung": rung} | job_figures(Path(args.work) / rung / "model")
            print(json.dumps(figures), flush=True)
            continue
        result = run_rung(rung, Path(args.work), args.set, args.seed, args.text, args.timeline)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
