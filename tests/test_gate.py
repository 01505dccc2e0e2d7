"""The fair gate (champion/challenger): production scored on the candidate's own test users.

Models: the session's learned bundle (the synthetic +1 walk) and a copy whose item table is
blurred with noise (worse, measured below). Data: walks where a step is +1 with probability
0.95 (an easy split) or 0.4 (a hard one), so each model's own-split figure says as much
about its split as about the model. The gate's inputs are measured by training/champion.py,
the decisions taken by the real Promoter on a file:// store."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from lmrec import bundle as fmt
from lmrec import registry, store
from lmrec.promote import Promoter, gate
from safetensors.numpy import load_file, save_file

from tests.conftest import TINY_HP, synthetic_rows, write_csv
from training import champion
from training.config import DataConfig
from training.data import load_interactions
from training.split import Split, leave_one_out

TOLERANCE = 0.002


def rewrite(src: Path, dst: Path, version: str, noise: float = 0.0) -> Path:
    """A copy of a bundle as another version; with `noise`, its student's item table blurred
    by Gaussian noise of that many standard deviations (a worse model that still serves)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / fmt.MANIFEST).read_text())
    manifest["model_version"] = version
    if noise:
        name = fmt.weights_file(manifest)
        path = dst / name
        weights = load_file(str(path))
        table = weights["item_emb.weight"]
        blur = np.random.default_rng(0).standard_normal(table.shape) * noise * table.std()
        weights["item_emb.weight"] = (table + blur).astype(table.dtype)
        save_file(weights, str(path))
        manifest["files"][name] = {
            "size": path.stat().st_size,
            "sha256": fmt.sha256_file(path),
        }
    (dst / fmt.MANIFEST).write_text(json.dumps(manifest))
    return dst


@pytest.fixture(scope="module")
def models(learned_bundle, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("gate-models")
    return {
        "good": rewrite(learned_bundle, tmp / "good", "v-good"),
        "blurred": rewrite(learned_bundle, tmp / "blurred", "v-blurred", noise=1.0),
    }


def walk_split(tmp: Path, p_step: float, seed: int, extra_items: int = 0) -> Split:
    rows = synthetic_rows(
        n_users=300, n_items=80 + extra_items, length=15, seed=seed, p_step=p_step
    )
    path = write_csv(
        tmp / f"walk-{p_step}-{seed}-{extra_items}.csv", ["user_id", "item_id", "timestamp"], rows
    )
    return leave_one_out(load_interactions(str(path), DataConfig(min_interactions=0, min_users=0)))


def own_figure(bundle_dir: Path, split: Split) -> float:
    """A model's test NDCG@10 on a split, alone: what its own manifest would record."""
    served = champion.Served.of(fmt.load(bundle_dir))
    return float(champion.per_user_ndcg(served, split, split.evalset("test")).mean())


def set_figure(bundle_dir: Path, figure: float, record: dict | None = None) -> dict:
    """The bundle's manifest with its served model's test figure (and the job's champion
    record) as a training job on that split would have written them."""
    manifest = json.loads((bundle_dir / fmt.MANIFEST).read_text())
    served = fmt.served_metric(manifest)
    manifest["metrics"][served]["test"]["full"]["ndcg@10"] = figure
    if record is not None:
        manifest["champion"] = record
    (bundle_dir / fmt.MANIFEST).write_text(json.dumps(manifest))
    return manifest


def artifact(root: str, job: str, bundle_dir: Path) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(bundle_dir.iterdir()):
            tar.add(path, arcname=path.name)
    uri = f"{root}/training-output/{job}/output/model.tar.gz"
    store.write_bytes(uri, buf.getvalue())
    return uri


def contest(tmp: Path, production: Path, old: Split, candidate: Path, new: Split):
    """Production with its figure from the old split serving; the candidate with its own
    figure and the paired record from the new split; the gate decides."""
    root = f"file://{tmp / 'store'}"
    prod_dir = rewrite(production, tmp / "production", "v-production")
    prod_manifest = set_figure(prod_dir, own_figure(prod_dir, old))
    registry.set_production(root, "lmrec", registry.publish(prod_dir, root, "lmrec"))
    cand_dir = rewrite(candidate, tmp / "candidate", "v-candidate")
    cand, prod = champion.Served.of(fmt.load(cand_dir)), champion.Served.of(fmt.load(prod_dir))
    ours = champion.per_user_ndcg(cand, new, new.evalset("test"))  # as the job's pass gives
    record = champion.compare(ours, prod, fmt.load(prod_dir).catalog, new)
    record |= {"production_version": "v-production", "split": "loo"}  # as for_job writes it
    cand_manifest = set_figure(cand_dir, own_figure(cand_dir, new), record)
    promoter = Promoter(root, "lmrec", TOLERANCE)
    decision = promoter.on_completed("lmrec-challenger", artifact(root, "challenger", cand_dir))
    # The old rule on the same manifests: each model's own split (no paired record).
    without = {k: v for k, v in cand_manifest.items() if k != "champion"}
    old_rule = gate(without, prod_manifest, TOLERANCE, "v-production")
    print(f"\npaired: {decision.action}: {decision.reason}\nold rule: {old_rule.reason}")
    return decision, old_rule, record


def test_old_split_looks_better_but_the_paired_comparison_promotes(models, tmp_path):
    # GIVEN production = the blurred model, whose figure was measured on an easy old split,
    # and a candidate = the good model, on a hard new split
    easy, hard = walk_split(tmp_path, 0.95, seed=11), walk_split(tmp_path, 0.4, seed=12)
    decision, old_rule, record = contest(tmp_path, models["blurred"], easy, models["good"], hard)
    # THEN the old rule would refuse it (production's easy figure is far above) ...
    assert not old_rule.accept and "worse than production beyond tolerance" in old_rule.reason
    assert old_rule.production_ndcg > old_rule.candidate_ndcg + 0.2
    # ... but on the same users the candidate is better beyond noise: promoted
    assert decision.action == "promoted", decision
    assert decision.basis == "paired" and decision.users == record["users"] == 300
    lo, hi = decision.difference_ci95
    assert lo > 0 and decision.difference == pytest.approx(record["difference"]["mean"])
    assert "not worse than production beyond noise on the same 300 test users" in decision.reason
    recorded = json.loads(
        store.read_bytes(
            f"file://{tmp_path / 'store'}/models/lmrec/decisions/lmrec-challenger.json"
        )
    )
    assert recorded["candidate_ndcg"] == record["candidate"]["ndcg@10"]
    assert recorded["production_ndcg"] == record["production"]["ndcg@10"]
    assert recorded["difference_ci95"] == [lo, hi]


def test_old_split_would_promote_but_the_paired_comparison_rejects(models, tmp_path):
    # GIVEN production = the good model measured on a hard old split, and a candidate = the
    # blurred model on an easy new split
    hard, easy = walk_split(tmp_path, 0.4, seed=12), walk_split(tmp_path, 0.95, seed=11)
    decision, old_rule, _ = contest(tmp_path, models["good"], hard, models["blurred"], easy)
    # THEN the old rule would promote it (its easy figure is far above production's) ...
    assert old_rule.accept and old_rule.candidate_ndcg > old_rule.production_ndcg + 0.2
    # ... but on the same users it is worse beyond noise: rejected, the interval in the reason
    assert decision.action == "rejected", decision
    lo, hi = decision.difference_ci95
    assert hi < -TOLERANCE
    assert "worse than production beyond noise and tolerance" in decision.reason
    assert f"95% interval [{lo:+.4f}, {hi:+.4f}]" in decision.reason
    production = json.loads(
        store.read_bytes(f"file://{tmp_path / 'store'}/models/lmrec/production.json")
    )
    assert production["model_version"] == "v-production"


def test_a_record_against_another_production_falls_back_and_says_so(models, tmp_path):
    # GIVEN a paired record against a version that no longer serves
    split = walk_split(tmp_path, 0.9, seed=3)
    served = champion.Served.of(fmt.load(models["good"]))
    ours = champion.per_user_ndcg(served, split, split.evalset("test"))
    record = champion.compare(ours, served, fmt.load(models["good"]).catalog, split)
    assert record["difference"]["ci95"] == [0.0, 0.0]  # a model against itself: a tie
    record |= {"production_version": "v-older", "split": "loo"}
    manifest = json.loads((models["good"] / fmt.MANIFEST).read_text())
    served_row = manifest["metrics"][fmt.served_metric(manifest)]["test"]["full"]
    served_row["ndcg@10"] = record["candidate"]["ndcg@10"]  # the job's figure is the record's
    verdict = gate({**manifest, "champion": record}, manifest, TOLERANCE, "v-now")
    # THEN the old rule decides, and the reason says why
    assert verdict.basis == "own splits" and verdict.accept
    assert (
        "no paired comparison (the job scored v-older, production is now v-now)" in verdict.reason
    )
    # a tie on the very production serving is promoted on the paired basis
    record["production_version"] = "v-now"
    tie = gate({**manifest, "champion": record}, manifest, TOLERANCE, "v-now")
    assert tie.accept and tie.basis == "paired" and tie.difference == 0.0


def test_items_production_does_not_know_rank_last_and_its_unknown_targets_miss(models, tmp_path):
    # GIVEN new data with 20 items the production model (80 items) never saw
    split = walk_split(tmp_path, 0.9, seed=5, extra_items=20)
    production = fmt.load(models["good"])
    to_rows = champion.row_map(split.data.item_ids, production.catalog)
    known = {f"i{i}" for i in range(80)}
    ids = split.data.item_ids
    assert [bool(to_rows[r + 1]) for r in range(len(ids))] == [i in known for i in ids]
    assert all(
        production.catalog.item_ids[to_rows[r + 1] - 1] == i
        for r, i in enumerate(ids)
        if i in known
    )
    # WHEN production scores the candidate's users
    scorer = champion.in_rows(champion.Served.of(production), to_rows)
    evalset = split.evalset("test")
    figures = champion.per_user_ndcg(scorer, split, evalset)
    # THEN every unknown item scores below every known one, and a target it does not know
    # is a miss
    scores = scorer(
        [
            split.history(u, p)
            for u, p in zip(evalset.users[:8], evalset.prefix_len[:8], strict=True)
        ]
    )
    assert (
        np.isneginf(scores[:, to_rows == 0]).all()
        and np.isfinite(scores[:, 1:][:, to_rows[1:] > 0]).all()
    )
    # a history of items it does not know only: its cold start, the popularity list
    unknown_row = int(np.flatnonzero(to_rows == 0)[1])  # [0] is padding
    cold = scorer([np.array([unknown_row])])[0]
    scored = to_rows > 0
    np.testing.assert_array_equal(cold[scored], production.popularity[to_rows[scored]])
    unknown_target = to_rows[evalset.targets] == 0
    assert unknown_target.any() and (figures[unknown_target] == 0).all()
    assert figures[~unknown_target].mean() > 0.3  # it still ranks the items it knows


@pytest.fixture
def job(learned_bundle, tmp_path, synthetic_csv, monkeypatch):
    """A store whose production is the learned bundle, and a tiny training job (in process,
    the SageMaker entry's code path) that sees it through LMREC_STORE_URI."""
    from tests.conftest import lmrec_cli as main

    root = f"file://{tmp_path / 'store'}"
    registry.set_production(root, "lmrec", registry.publish(learned_bundle, root, "lmrec"))
    monkeypatch.setenv("LMREC_STORE_URI", root)
    monkeypatch.setenv("LMREC_MODEL_NAME", "lmrec")
    hp = {**TINY_HP, "epochs": "1", "student_epochs": "1", "min_interactions": "100"}
    out = tmp_path / "job"
    args = ["train", "--data", str(synthetic_csv), "--output", str(out)]
    pointer = registry.read_current(root, "lmrec").pointer
    return root, pointer, lambda: main([*args, *(f"--set={k}={v}" for k, v in hp.items())]), out


def test_the_job_scores_production_on_its_own_test_users(job):
    _, pointer, train, out = job
    # WHEN the job runs with a readable production
    assert train() == 0
    # THEN the manifest, metrics.json and the report carry both figures on the same users
    record = json.loads((out / fmt.MANIFEST).read_text())["champion"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["champion"] == record
    assert record["production_version"] == pointer.model_version
    assert record["users"] == metrics["summary"]["evaluated_users"]
    lo, hi = record["difference"]["ci95"]
    assert lo <= record["candidate"]["ndcg@10"] - record["production"]["ndcg@10"] <= hi
    # the candidate's figure is the served model's own test figure, measured again
    served = fmt.metric_label(metrics["summary"]["served"])
    own = metrics["metrics"][served]["test"]["full"]["ndcg@10"]
    assert record["candidate"]["ndcg@10"] == pytest.approx(own, abs=0.02)
    report = (out / "report.md").read_text()
    assert "## Against production" in report and f"{hi:+.4f}" in report


def test_a_production_that_fails_to_load_does_not_fail_the_job(job):
    root, pointer, train, out = job
    # GIVEN production's weights damaged after publishing (its checksum no longer matches)
    production = Path(pointer.bundle_uri.removeprefix("file://"))
    weights = fmt.weights_file(json.loads((production / fmt.MANIFEST).read_text()))
    (production / weights).write_bytes(b"damaged")
    # THEN the job still trains and exports, with the problem recorded ...
    assert train() == 0
    record = json.loads((out / fmt.MANIFEST).read_text())["champion"]
    assert record["production_version"] == pointer.model_version
    assert weights in record["problem"]
    assert "could not be scored" in (out / "report.md").read_text()
    # ... and the gate falls back to the old rule and says why
    decision = Promoter(root, "lmrec", TOLERANCE).on_completed(
        "lmrec-job", artifact(root, "job", out)
    )
    print(f"\n{decision.action}: {decision.reason}")
    assert decision.basis == "own splits"
    assert decision.reason.startswith("no paired comparison (the job could not score production: ")
