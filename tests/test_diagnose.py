"""benchmarks/diagnose.py reproduces the training job's own test figures and splits them by
how popular the held-out item is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, TINY_HP

# each test runs the diagnosis script on a trained model: make test-slow and CI run them
pytestmark = pytest.mark.slow


def diagnose(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "diagnose.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def data_args(ml100k_small, tmp_path) -> list[str]:
    """The data and hyperparameters `trained_bundle` was trained with."""
    inter, items = ml100k_small
    preset = tmp_path / "hp.json"
    preset.write_text(json.dumps(TINY_HP))
    return ["--data", str(inter), "--items", str(items), "--preset", str(preset)]


def test_matches_training_metrics_and_buckets_add_up(trained_bundle, data_args):
    proc = diagnose(
        *data_args,
        "--weights", str(trained_bundle / "teacher.safetensors"),
        "--config", str(trained_bundle / "teacher_config.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    trained = json.loads((trained_bundle / "metrics.json").read_text())["metrics"]["teacher"]
    plain = out["popularity_prior"][0]
    assert plain["weight"] == 0.0
    for protocol in ("full", "sampled100"):
        for metric in ("hr@10", "ndcg@10"):
            expected = trained["test"][protocol][metric]
            assert plain[f"{protocol}_{metric}"] == pytest.approx(expected, abs=1e-4)
    buckets = out["by_target_popularity"]
    assert sum(b["share"] for b in buckets) == pytest.approx(1.0, abs=1e-3)
    weighted = sum(b["share"] * b["sampled100_hr@10"] for b in buckets)
    assert weighted == pytest.approx(plain["sampled100_hr@10"], abs=2e-3)
    # A rarely seen item is harder to recommend than a head item, for any trained model.
    assert buckets[-1]["sampled100_hr@10"] > buckets[0]["sampled100_hr@10"]


def test_missing_file_is_one_line(tmp_path):
    proc = diagnose(
        "--data", str(tmp_path / "nope.csv"), "--preset", str(tmp_path / "hp.json"),
        "--weights", str(tmp_path / "w.safetensors"), "--config", str(tmp_path / "c.json"),
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"diagnose: no such file: {tmp_path / 'nope.csv'}"


def test_teacher_of_another_data_set_is_one_line(trained_bundle, data_args, tmp_path):
    config = json.loads((trained_bundle / "teacher_config.json").read_text())
    other = tmp_path / "teacher_config.json"
    other.write_text(json.dumps({**config, "n_items": config["n_items"] + 5}))
    proc = diagnose(
        *data_args,
        "--weights", str(trained_bundle / "teacher.safetensors"), "--config", str(other),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith(
        "a teacher of another data set (or of other --preset data settings)"
    )
