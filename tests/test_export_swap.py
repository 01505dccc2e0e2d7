"""training/model_swap.py: a job's output is written into a stage and swapped in by renames,
so one whole model is in the model dir whatever fails, is interrupted or is killed."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from training.model_swap import PREVIOUS, STAGE, recover, replace_dir, staged

OLD = {n: f"old {n}" for n in ("metrics.json", "manifest.json", "weights")}
NEW = {n: f"new {n}" for n in ("metrics.json", "manifest.json", "teacher.pt")}


def _files(d: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in d.iterdir() if p.is_file()}


def _names(d: Path) -> list[str]:
    """What a reader of the model dir sees (the stage, ours, is removed by `staged`)."""
    return sorted(p.name for p in d.iterdir() if p.name != STAGE)


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "model"
    model.mkdir()
    for name, text in OLD.items():
        (model / name).write_text(text)
    stage = model / STAGE
    stage.mkdir()
    for name, text in NEW.items():
        (stage / name).write_text(text)
    return model, stage


def _interrupt_at(monkeypatch, *counts: int) -> None:
    calls = itertools.count(1)
    real = Path.rename

    def rename(self, target):
        if next(calls) in counts:
            raise KeyboardInterrupt
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)


def test_a_swap_replaces_the_model_whole_and_leaves_nothing_of_its_own(tmp_path):
    model = tmp_path / "model"
    with staged(model) as stage:
        assert stage.parent == model  # inside: the one place known to be writable
        (stage / "metrics.json").write_text("first")
    with staged(model) as stage:
        assert _files(model) == {"metrics.json": "first"}  # untouched until the swap
        for name, text in NEW.items():
            (stage / name).write_text(text)
    assert _files(model) == NEW and sorted(p.name for p in model.iterdir()) == sorted(NEW)


def test_a_failure_while_writing_removes_the_stage_and_keeps_the_model(tmp_path):
    model, stage = _setup(tmp_path)
    stage.rename(tmp_path / "unused")
    with pytest.raises(OSError), staged(model) as stage:
        (stage / "metrics.json").write_text("half")
        raise OSError("disk full")
    assert _files(model) == OLD and sorted(p.name for p in model.iterdir()) == sorted(OLD)


@pytest.mark.parametrize("at", range(1, 8))
def test_an_interrupted_swap_is_undone_at_once(tmp_path, monkeypatch, at):
    model, stage = _setup(tmp_path)
    _interrupt_at(monkeypatch, at)
    with pytest.raises(KeyboardInterrupt):
        replace_dir(stage, model)
    monkeypatch.undo()
    assert _files(model) == OLD and not (model / PREVIOUS).exists()


@pytest.mark.parametrize(("first", "second"), [(2, 3), (4, 5), (5, 6), (6, 7), (4, 6), (3, 8)])
def test_an_interrupted_undo_is_finished_by_the_next_run(tmp_path, monkeypatch, first, second):
    model, stage = _setup(tmp_path)
    _interrupt_at(monkeypatch, first, second)  # Ctrl-C twice: the second lands in the undo
    with pytest.raises(KeyboardInterrupt):
        replace_dir(stage, model)
    monkeypatch.undo()
    recover(model)  # what the next job does first
    assert _files(model) == OLD and _names(model) == sorted(OLD)


@pytest.mark.parametrize("killed_after", range(0, 9))
def test_a_killed_swap_leaves_one_whole_model_after_recovery(tmp_path, killed_after):
    model, stage = _setup(tmp_path)
    pid = os.fork()
    if pid == 0:  # the child swaps and is killed outright after `killed_after` renames
        calls = itertools.count(1)
        real = Path.rename

        def rename(self, target):
            if next(calls) > killed_after:
                os._exit(9)
            return real(self, target)

        Path.rename = rename  # type: ignore[method-assign]
        replace_dir(stage, model)
        os._exit(0)
    os.waitpid(pid, 0)
    recover(model)
    assert _files(model) in (OLD, NEW)
    assert _names(model) in (sorted(OLD), sorted(NEW))
