"""Every benchmark that takes `--set` refuses a bad pair while parsing its command line:
exit 2 and one readable line, before any data is read or a job is launched."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))  # as when a benchmark runs as a script
SET_TAKERS = ["cold_items", "cold_start", "dropout_speed", "quality", "repeats", "scale", "sweep"]


def _refusal(monkeypatch, capsys, script: str, *args: str) -> str:
    main = importlib.import_module(script).main
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err.strip()
    assert stop.value.code not in (0, None), err
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize("script", SET_TAKERS)
def test_a_set_pair_without_equals_is_refused(monkeypatch, capsys, script):
    said = _refusal(monkeypatch, capsys, script, "--set", "epochs")
    assert said.endswith("--set 'epochs': expected KEY=VALUE")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "epochs"], "--set 'epochs': expected KEY=VALUE"),
        (["--variant", "lr3:lr"], "--set 'lr': expected KEY=VALUE"),
        (["--variant", ":lr=3e-3"], "--variant ':lr=3e-3': expected NAME:key=value,..."),
    ],
)
def test_teacher_study_refuses_bad_pairs(monkeypatch, capsys, args, message):
    assert _refusal(monkeypatch, capsys, "teacher_study", *args).endswith(message)


def test_teacher_study_checks_every_variant_before_reading_the_data(monkeypatch, tmp_path):
    missing = tmp_path / "never-read.csv"  # a bad variant is named before the data is sought
    args = ["--data", str(missing), "--seconds", "1", "--variant", "a:", "--variant", "b:lr=x"]
    monkeypatch.setattr(sys, "argv", ["teacher_study.py", *args])
    with pytest.raises(SystemExit) as stop:
        importlib.import_module("teacher_study").main()
    said = str(stop.value.code)
    assert said.startswith("error: ") and "lr" in said and "never-read" not in said
