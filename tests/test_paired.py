"""benchmarks/paired.py: the served model's per-user figures agree with the job's own, and
the paired differences are the per-user differences."""

from __future__ import annotations

import json
import sys

import pytest
from lmrec.bundle import metric_label

from benchmarks import paired


def test_paired_figures_match_the_jobs_served_figure(
    trained_bundle, ml100k_small, monkeypatch, capsys
):
    # GIVEN a finished job WHEN the benchmark rebuilds its split and scores its bundle
    argv = ["paired.py", "--data", str(ml100k_small[0]), "--model", str(trained_bundle)]
    monkeypatch.setattr(sys, "argv", [*argv, "--split", "loo"])
    paired.main()
    out = json.loads(capsys.readouterr().out)
    # THEN the served figure is the job's own served test figure, on the same users
    doc = json.loads((trained_bundle / "metrics.json").read_text())
    job = doc["metrics"][metric_label(doc["summary"]["served"])]["test"]["full"]
    assert out["served"]["all"]["users"] == job["users"]
    assert out["served"]["all"]["mean"] == pytest.approx(job["ndcg@10"], abs=1e-4)
    # AND each difference is served minus the baseline, user by user
    for name in ("own_recent", "cooccurrence", "recent_popularity"):
        row = out["vs"][name]["all"]
        diff = out["served"]["all"]["mean"] - row["baseline"]["mean"]
        assert row["served_minus_baseline"]["mean"] == pytest.approx(diff, abs=2e-4)
        low, high = row["served_minus_baseline"]["ci95"]
        assert low <= row["served_minus_baseline"]["mean"] <= high


def test_against_another_job_is_the_per_user_difference(
    trained_bundle, ml100k_small, monkeypatch, capsys
):
    # GIVEN the same finished job as both sides WHEN compared with --against
    argv = ["paired.py", "--data", str(ml100k_small[0]), "--model", str(trained_bundle)]
    monkeypatch.setattr(sys, "argv", [*argv, "--split", "loo", "--against", str(trained_bundle)])
    paired.main()
    out = json.loads(capsys.readouterr().out)
    # THEN every user's difference is zero, so the mean and its interval are exactly 0
    row = out["vs"]["against"]["all"]
    assert row["baseline"] == out["served"]["all"]
    assert row["served_minus_baseline"]["mean"] == 0 and row["served_minus_baseline"]["ci95"] == [
        0,
        0,
    ]
