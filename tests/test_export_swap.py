"""training/sagemaker.py staging_dir / replace_dir: a run's output is written aside and
swapped in by renames, so one whole model is in the model dir whatever fails or is killed."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.sagemaker import PREVIOUS, STAGE, replace_dir, staging_dir


def _files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in d.iterdir() if p.is_file()}


def _old_model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    for name in ("metrics.json", "manifest.json", "old-only.txt"):
        (model / name).write_text(f"old {name}")
    return model


def _stage_new(model: Path) -> Path:
    stage = staging_dir(model)
    for name in ("metrics.json", "manifest.json", "new-only.txt"):
        (stage / name).write_text(f"new {name}")
    return stage


def test_a_swap_replaces_the_model_whole_and_leaves_nothing_of_its_own(tmp_path):
    model = _old_model(tmp_path)
    stage = _stage_new(model)
    assert stage.parent == model  # inside: the one place known to be writable
    assert _files(model)["metrics.json"] == "old metrics.json"  # untouched until the swap
    replace_dir(stage, model)
    assert _files(model) == {
        n: f"new {n}" for n in ("metrics.json", "manifest.json", "new-only.txt")
    }
    assert sorted(p.name for p in model.iterdir()) == [
        "manifest.json",
        "metrics.json",
        "new-only.txt",
    ]


@pytest.mark.parametrize("fail_at", [1, 3, 4, 6])
def test_a_rename_that_fails_midway_puts_the_old_model_back(tmp_path, monkeypatch, fail_at):
    model = _old_model(tmp_path)
    stage = _stage_new(model)
    calls = {"n": 0}
    real = Path.rename

    def flaky(self, target):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise KeyboardInterrupt  # or a disk error: anything, at any point of the swap
        return real(self, target)

    monkeypatch.setattr(Path, "rename", flaky)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(stage, model)
    monkeypatch.undo()
    assert _files(model) == {
        n: f"old {n}" for n in ("metrics.json", "manifest.json", "old-only.txt")
    }
    assert not (model / PREVIOUS).exists()
    assert _files(stage) == {
        n: f"new {n}" for n in ("metrics.json", "manifest.json", "new-only.txt")
    }


def test_a_swap_killed_outright_is_undone_by_the_next_run(tmp_path):
    # GIVEN a model dir as SIGKILL left it: the old model half moved aside (the marker first),
    # one new file moved in
    model = _old_model(tmp_path)
    (model / PREVIOUS).mkdir()
    for name in ("metrics.json", "manifest.json"):
        (model / name).rename(model / PREVIOUS / name)
    (model / "manifest.json").write_text("new manifest.json")
    (model / STAGE).mkdir()
    # WHEN the next run stages its output THEN the old model is back, whole
    staging_dir(model)
    assert _files(model) == {
        n: f"old {n}" for n in ("metrics.json", "manifest.json", "old-only.txt")
    }
    assert sorted(p.name for p in model.iterdir() if p.is_dir()) == [STAGE]
