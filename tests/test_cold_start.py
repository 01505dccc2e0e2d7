"""The cold-start answer chosen by the data (training/cold_start.py) and followed by serving
under LMREC_COLD_START=auto (lmrec.bundle.default_cold_start)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from lmrec import bundle as fmt
from lmrec.bundle import default_cold_start
from lmrec.recommend import Recommender
from lmrec.settings import ApiSettings

from tests.conftest import write_csv
from training.cold_start import choose_cold_start, cold_start_line
from training.config import DataConfig, from_hyperparameters
from training.data import load_interactions
from training.evaluate import sample_negatives
from training.evaluation import evaluate_baselines
from training.split import make_split


def _rows(late_hits: bool, users: int = 300, seed: int = 0) -> list[list]:
    """Each user takes 8 of items 1-40 early (1-10 the most), then 4 items late: from 41-50
    (hits that are new late) when `late_hits`, else from the same early distribution."""
    rng = np.random.default_rng(seed)
    early_p = np.r_[np.full(10, 5.0), np.ones(30)]
    early_p /= early_p.sum()
    rows = []
    for u in range(users):
        early = rng.choice(np.arange(1, 41), size=12, replace=False, p=early_p)
        late = rng.choice(np.arange(41, 51), 4, replace=False) if late_hits else early[8:]
        for j, item in enumerate(early[:8]):
            rows.append([f"u{u}", f"i{item}", int(rng.integers(0, 1000)) + j])
        for j, item in enumerate(late):
            rows.append([f"u{u}", f"i{item}", 1000 + int(rng.integers(0, 200)) + j])
    return rows


def _choice(tmp_path: Path, late_hits: bool) -> dict | None:
    path = write_csv(tmp_path / "log.csv", ["user_id", "item_id", "timestamp"], _rows(late_hits))
    data = load_interactions(str(path), DataConfig(min_interactions=1, min_users=1))
    split = make_split(data, "time")
    negatives = {
        name: sample_negatives(split, split.evalset(name), 20, seed=i)
        for i, name in enumerate(("valid", "test"))
    }
    test: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray] = {}
    cfg = from_hyperparameters({})
    evaluate_baselines(split, negatives, cfg, False, {}, True, test, valid)
    assert len(valid["popularity"]) == len(split.evalset("valid"))
    return choose_cold_start(valid, test)


def test_a_log_whose_late_hits_are_new_chooses_trending_and_a_steady_one_popular(tmp_path):
    # GIVEN a time split of a log whose late interactions go to items that became hits late
    record = _choice(tmp_path / "a", late_hits=True)
    # THEN recent popularity is ahead on valid beyond noise, and the job serves trending
    assert record is not None and record["choice"] == "trending", record
    assert record["valid"][1] > 0 and record["valid_users"] > 10 and "test" in record
    assert "ahead beyond noise" in record["why"]
    # GIVEN one whose late interactions follow the early ones THEN popular stays
    steady = _choice(tmp_path / "b", late_hits=False)
    assert steady is not None and steady["choice"] == "popular", steady


def test_only_a_gain_beyond_noise_switches_to_trending():
    rng = np.random.default_rng(1)
    base = rng.random(400)
    for gain, expect in [(0.2, "trending"), (0.0, "popular"), (-0.2, "popular")]:
        now = base + gain + rng.normal(0, 0.05, 400)
        record = choose_cold_start({"popularity": base, "recent_popularity": now})
        assert record is not None and record["choice"] == expect, (gain, record)
        assert "test" not in record  # no test rows given
    # a tie is not a switch; the line says so and what overrides it
    tie = choose_cold_start({"popularity": base, "recent_popularity": base.copy()})
    assert tie is not None and "a tie" in cold_start_line(tie)
    assert "LMREC_COLD_START" in cold_start_line(tie)
    # a job without the baselines records nothing; rows of different users are refused
    assert choose_cold_start({"popularity": base}) is None and cold_start_line(None) == ""
    with pytest.raises(ValueError, match="users"):
        choose_cold_start({"popularity": base, "recent_popularity": base[:10]})


def test_serving_follows_the_manifest_and_an_old_or_odd_bundle_serves_popular(
    trained_bundle, tmp_path
):
    # GIVEN the job's own bundle (its choice recorded) and copies saying trending, an
    # unknown value, or nothing (a bundle from before the key)
    manifest = json.loads((trained_bundle / fmt.MANIFEST).read_text())
    assert manifest["cold_start"]["choice"] in ("popular", "trending")
    assert (
        Recommender.load(str(trained_bundle)).default_cold_start
        == (manifest["cold_start"]["choice"])
    )
    for value, expect in [("trending", "trending"), ("sometimes", "popular"), (None, "popular")]:
        dst = tmp_path / str(value)
        shutil.copytree(trained_bundle, dst)
        changed = dict(manifest)
        if value is None:
            changed.pop("cold_start")
        else:
            changed["cold_start"] = {"choice": value}
        (dst / fmt.MANIFEST).write_text(json.dumps(changed))
        # the manifest's checksum covers no field of its own: the bundle still verifies
        assert Recommender.load(str(dst)).default_cold_start == expect
        assert default_cold_start(changed) == expect
    # AND the job's metrics.json carries the measurement behind the choice
    summary = json.loads((trained_bundle / "metrics.json").read_text())["summary"]
    assert summary["cold_start"]["choice"] == manifest["cold_start"]["choice"]
    assert summary["cold_start"]["valid_users"] > 0


def test_the_deployment_setting_is_auto_by_default_and_refuses_other_values(monkeypatch):
    assert ApiSettings().cold_start == "auto"
    monkeypatch.setenv("LMREC_COLD_START", "trending")
    assert ApiSettings().cold_start == "trending"
    monkeypatch.setenv("LMREC_COLD_START", "sometimes")
    with pytest.raises(ValueError, match="cold_start"):
        ApiSettings()


def _copy(trained_bundle: Path, dst: Path, recent: np.ndarray | None) -> Path:
    """A copy of the bundle with recent_popularity.npy replaced (None: a bundle from before
    the file), its manifest's checksum rewritten so that only the content differs."""
    shutil.copytree(trained_bundle, dst)
    manifest = json.loads((dst / fmt.MANIFEST).read_text())
    path = dst / fmt.RECENT_POPULARITY
    if recent is None:
        path.unlink()
        manifest["files"].pop(fmt.RECENT_POPULARITY)
    else:
        np.save(path, recent)
        record = {"size": path.stat().st_size, "sha256": fmt.sha256_file(path)}
        manifest["files"][fmt.RECENT_POPULARITY] = record
    (dst / fmt.MANIFEST).write_text(json.dumps(manifest))
    return dst


def test_the_trending_prior_is_the_datas_recent_popularity(trained_bundle, tmp_path):
    # GIVEN the job's bundle: it carries the decayed counts, checksummed like every file
    loaded = fmt.load(str(trained_bundle))
    recent, popularity = loaded.recent_popularity, loaded.popularity
    assert recent is not None and recent.shape == popularity.shape
    # THEN each row weighs at most 1 (its age halves it), so every count is at most the
    # all-time one and positive where the item occurs; the newest rows weigh 1: not all-time
    assert np.all(recent <= popularity + 1e-4) and np.all((recent > 0) == (popularity > 0))
    assert 0 < recent.sum() < popularity.sum()
    assert loaded.trending_prior is recent
    # AND a bundle from before the file serves all-time counts as its prior
    old = fmt.load(str(_copy(trained_bundle, tmp_path / "old", None)))
    assert old.recent_popularity is None and old.trending_prior is old.popularity
    # AND counts that do not match the catalog are refused, as popularity.npy's are
    short = _copy(trained_bundle, tmp_path / "short", recent[:-1])
    with pytest.raises(fmt.BundleError, match="recent popularity does not match the catalog"):
        fmt.load(str(short))
    table = _copy(trained_bundle, tmp_path / "table", np.zeros((2, len(recent)), np.float32))
    with pytest.raises(fmt.BundleError, match="not 1-D counts"):
        fmt.load(str(table))
