"""The benchmarks' command lines: a bad `--set` pair (or a teacher-study variant, a sweep
config, a data spec) is refused with exit 2 and one readable line, before any data is read
or a job is launched; a bad value that parses is refused the same way, not with a traceback."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.conftest import REPO
from training.config import COMMA_PAIRS as COMMAS

sys.path.insert(0, str(REPO / "benchmarks"))  # as when a benchmark runs as a script
SET_TAKERS = ["cold_items", "cold_start", "dropout_speed", "quality", "repeats", "scale", "sweep"]


def _refusal(monkeypatch, capsys, script: str, *args: str) -> str:
    """The last line a refused command line printed (exit 2, no traceback)."""
    main = importlib.import_module(script).main
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2, err
    assert "Traceback" not in err
    return err.splitlines()[-1]


@pytest.mark.parametrize("script", SET_TAKERS)
@pytest.mark.parametrize("pair", ["epochs", "=5"])
def test_a_set_pair_without_a_key_or_equals_is_refused(monkeypatch, capsys, script, pair):
    said = _refusal(monkeypatch, capsys, script, "--set", pair)
    assert said.endswith(f"error: argument --set: {pair!r}: expected KEY=VALUE")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--base", "epochs"], "argument --base: 'epochs': expected KEY=VALUE" + COMMAS),
        (["--variant", "lr3:lr"], "argument --variant: 'lr': expected KEY=VALUE" + COMMAS),
        (["--variant", ":lr=3e-3"], "argument --variant: ':lr=3e-3': expected NAME:key=value,..."),
    ],
)
def test_teacher_study_refuses_bad_pairs(monkeypatch, capsys, args, message):
    assert _refusal(monkeypatch, capsys, "teacher_study", *args).endswith(message)


@pytest.mark.parametrize(
    "variant, message",
    [
        ("b:lr=x", "hyperparameter lr='x' is not a valid float"),
        ("b:min_users=30", "variant 'b' changes a data setting: give it with --base"),
    ],
)
def test_teacher_study_checks_every_variant_before_reading_the_data(
    monkeypatch, capsys, tmp_path, variant, message
):
    missing = tmp_path / "never-read.csv"  # the variant is refused before the data is sought
    args = ["--data", str(missing), "--seconds", "1", "--variant", "a:", "--variant", variant]
    said = _refusal(monkeypatch, capsys, "teacher_study", *args)
    assert said.endswith(message) and "never-read" not in said


def test_sweep_checks_its_configs_pairs(monkeypatch, capsys):
    said = _refusal(monkeypatch, capsys, "sweep", "--config", "a:epochs")
    assert said.endswith("argument --config: 'epochs': expected KEY=VALUE" + COMMAS)


def test_cold_start_refuses_a_bad_value_in_one_line(monkeypatch, capsys, tmp_path):
    data = tmp_path / "log.csv"
    data.write_text("user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n", encoding="utf-8")
    said = _refusal(monkeypatch, capsys, "cold_start", "--data", f"t={data}", "--set", "lr=x")
    assert said.endswith("error: t loo: hyperparameter lr='x' is not a valid float")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("games", "'games': expected NAME=PATH[:PRESET]"),
        ("g=/nonexistent.csv", "'g=/nonexistent.csv': no such file /nonexistent.csv"),
    ],
)
def test_baselines_checks_its_data_specs(monkeypatch, capsys, spec, message):
    said = _refusal(monkeypatch, capsys, "baselines", "--data", spec)
    assert said.endswith(f"argument --data: {message}")


def test_baselines_refuses_a_missing_preset(monkeypatch, capsys, tmp_path):
    data = tmp_path / "log.csv"
    data.write_text("user_id,item_id,timestamp\nu1,i1,1\n", encoding="utf-8")
    spec = f"g={data}:{tmp_path / 'no-preset.json'}"
    assert _refusal(monkeypatch, capsys, "baselines", "--data", spec).endswith("no-preset.json")
