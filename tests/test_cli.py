"""The `lmrec` command line as a person meets it: help, version, mistakes, serve a folder."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port, run_training


def test_version_and_help_show_defaults_without_importing_torch():
    proc = run_training(["--version"])
    assert proc.returncode == 0 and proc.stdout.startswith("lmrec ")
    code = (
        "import sys\nfrom lmrec.local.cli import main\n"
        "for command in ('serve', 'publish', 'rollback', 'demo'):\n"
        "    try:\n        main([command, '--help'])\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "(default: 8000)" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_bare_train_outside_a_container_explains_data(tmp_path):
    proc = run_training(["train"], env={"SAGEMAKER_BASE_DIR": str(tmp_path / "none")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no --data given") and "--output DIR" in last


def test_serve_refuses_what_is_not_a_model_in_one_line(tmp_path):
    for target, fragment in ((tmp_path / "missing", "no such file"), (tmp_path, "not a trained")):
        proc = run_training(["serve", str(target)])
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert fragment in proc.stderr


def test_publish_then_rollback_on_a_plain_directory_store(tmp_path, trained_bundle):
    store = tmp_path / "store"
    first = run_training(["publish", str(trained_bundle), "--store", str(store)])
    assert first.returncode == 0, first.stderr
    published = json.loads(first.stdout)
    assert (store / "models" / "lmrec" / "production.json").exists()
    assert published["bundle_uri"].startswith("file://")
    # one version only: nothing to go back to, said in one line
    back = run_training(["rollback", "--store", str(store)])
    assert back.returncode == 2 and "previous version" in back.stderr


def test_serve_a_trained_folder_prints_its_url_a_request_and_where_erasures_go(trained_bundle):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMREC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "serve", str(trained_bundle), "--port", str(port)],
        cwd=REPO,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    erasure = trained_bundle.parent / f"{trained_bundle.name}-erasure"
    try:
        assert proc.stdout is not None
        serving, example, users = (proc.stdout.readline() for _ in range(3))
        url = f"http://127.0.0.1:{port}"
        assert serving.startswith("serving model ") and url in serving
        # the request to try holds ids of this model's catalog (MovieLens here: "50", ...)
        words = shlex.split(example.removeprefix("try: "))
        assert words[:3] == ["curl", "-s", f"{url}/v1/recommendations"]
        body = json.loads(words[words.index("-d") + 1])
        assert users.strip() == (
            "user store: none (--user-store); erasure requests (DELETE /v1/users/ID) are "
            f"recorded in {erasure.as_uri()}"
        )
        reply = httpx.post(f"{url}/v1/recommendations", json=body, timeout=10).json()
        assert reply["strategy"] == "personalized" and reply["unknown_items"] == []
        erased = httpx.delete(f"{url}/v1/users/1", timeout=10).json()
        assert erased["erasure_recorded"]
    finally:
        proc.terminate()
        proc.wait(10)
    try:  # the record outlives the server (it was in the server's temporary store before)
        assert len(list((erasure / "pending").glob("*.json"))) == 1
    finally:
        shutil.rmtree(erasure, ignore_errors=True)


def test_every_command_has_a_description_and_every_option_a_help():
    from lmrec.local.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = {action.dest: action.help for action in sub._choices_actions}
    missing = []
    for name, command in sub.choices.items():
        if not listed.get(name) or not command.description:
            missing.append(f"lmrec {name}: no one-line description")
        for action in command._actions:
            if not action.help:
                missing.append(f"lmrec {name} {(action.option_strings or [action.dest])[0]}")
    assert sorted(listed) == sorted(sub.choices)  # every command is listed in lmrec --help
    assert missing == []


TEACHER_ONLY = [
    *("--set", "student=false", "--set", "transitions=false", "--set", "num_threads=1"),
    *("--set", "d_model=16", "--set", "n_blocks=1", "--set", "max_len=20", "--set", "epochs=1"),
]


def _teacher_only(tmp_path, data, *extra: str):
    out = tmp_path / "my-model"
    proc = run_training(["train", "--data", str(data), "--output", str(out), *TEACHER_ONLY, *extra])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stderr


@pytest.mark.slow  # two trainings and a serve: about 14 s of CPU
def test_a_run_prints_its_budget_and_why_no_bundle_and_a_rerun_says_it_resumes(
    tmp_path, synthetic_csv
):
    # GIVEN a quick first run with the students off
    out, said = _teacher_only(tmp_path, synthetic_csv, "--quick")
    # THEN it printed the budget it ran under, and why it wrote no bundle
    assert "time budget: 60 s for the whole job" in said
    assert not [line for line in said.splitlines() if line.startswith("resuming")]
    why = [line for line in said.splitlines() if line.startswith("no bundle written")]
    assert len(why) == 1 and "student=false" in why[0] and str(out) in why[0]
    refused = run_training(["serve", str(out)])
    assert refused.returncode == 2 and "trained with student=false" in refused.stderr
    # WHEN the same command runs again THEN it says it resumes, from where, and how not to
    _, said = _teacher_only(tmp_path, synthetic_csv, "--quick")
    checkpoints = tmp_path / "my-model-checkpoints"
    assert f"resuming from {checkpoints}: " in said and "`lmrec train --fresh`" in said


@pytest.mark.slow  # two trainings: about 10 s of CPU
def test_fresh_removes_the_checkpoints_and_resumes_nothing(tmp_path, synthetic_csv):
    _teacher_only(tmp_path, synthetic_csv)
    checkpoints = tmp_path / "my-model-checkpoints"
    old = (checkpoints / "teacher" / "trainer.json").stat().st_mtime_ns
    _, said = _teacher_only(tmp_path, synthetic_csv, "--fresh")
    assert f"--fresh: removed 1 checkpoints in {checkpoints}" in said
    assert not [line for line in said.splitlines() if line.startswith("resuming")]
    assert "resumed" not in said  # the trainer's own log line
    assert (checkpoints / "teacher" / "trainer.json").stat().st_mtime_ns > old
    # the auto time goal holds although epochs=1 was set
    assert "time budget: 480 s for the whole job (auto from the data's size" in said


def test_quick_and_a_budget_of_ones_own_are_refused_together(tmp_path, synthetic_csv, capsys):
    from tests.conftest import lmrec_cli as main

    args = ["train", "--data", str(synthetic_csv), "--output", str(tmp_path / "m"), "--quick"]
    assert main([*args, "--set", "max_total_seconds=5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --quick sets max_total_seconds: give one or the other"
    )


@pytest.mark.parametrize("pair", ["epochs", "=5", " =5", ""])
def test_a_set_pair_without_a_key_is_refused_in_one_line(tmp_path, synthetic_csv, capsys, pair):
    from tests.conftest import lmrec_cli as main

    args = ["train", "--data", str(synthetic_csv), "--output", str(tmp_path / "m")]
    assert main([*args, "--set", pair]) == 2
    assert capsys.readouterr().err.strip() == f"error: --set {pair!r}: expected KEY=VALUE"
    assert not (tmp_path / "m").exists()


def test_a_bad_set_pair_or_hyperparameters_file_reaches_the_failure_file(
    tmp_path, synthetic_csv, capsys, monkeypatch
):
    from tests.conftest import lmrec_cli as main

    asked = tmp_path / "why.txt"
    args = ["train", "--data", str(synthetic_csv), "--output", str(tmp_path / "m")]
    assert main([*args, "--failure-file", str(asked), "--set", "epochs"]) == 2
    assert "expected KEY=VALUE" in asked.read_text()
    # a failure file that cannot be written: still exit 2 and one line, no traceback
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    capsys.readouterr()
    assert main([*args, "--failure-file", str(blocked / "why.txt"), "--set", "epochs"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "the failure file could not be written" in said[0]
    # in a container a malformed hyperparameters.json ends in output/failure as well
    base = tmp_path / "opt"
    (base / "input" / "config").mkdir(parents=True)
    (base / "input" / "config" / "hyperparameters.json").write_text("{not json")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
    assert main(["train"]) == 2
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.startswith("error: ") and "hyperparameters" in said
    assert said.removeprefix("error: ") in (base / "output" / "failure").read_text()


def test_a_failed_local_run_leaves_no_failure_file_unless_asked(tmp_path):
    out, missing, asked = tmp_path / "broken", tmp_path / "missing.csv", tmp_path / "why.txt"
    proc = run_training(["train", "--data", str(missing), "--output", str(out)])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {missing}: no such file or directory"
    assert list(tmp_path.iterdir()) == []  # no <output>-failure beside the output
    proc = run_training(
        ["train", "--data", str(missing), "--output", str(out), "--failure-file", str(asked)]
    )
    assert proc.returncode == 2 and "no such file or directory" in asked.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["why.txt"]


def test_serve_on_a_busy_port_says_so_in_one_line_before_anything_else(trained_bundle):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_training(["serve", str(trained_bundle), "--port", str(port)], timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port} (address already in use): "
        "choose another port with --port N"
    )


def test_the_lmrec_command_lives_in_the_lmrec_package():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["lmrec"] == "lmrec.local.cli:console"
    # the SageMaker container's entry (python -m training) runs the same main
    assert "from lmrec.local.cli import main" in (REPO / "training" / "__main__.py").read_text()


def test_a_checkout_runs_its_own_functions_and_events():
    from lmrec.local import assets

    # a checkout never takes an installed copy (tests/test_installed_package.py: the wheel's)
    assert assets.ROOT == REPO
    assert assets.function_code("retrain") == REPO / "functions" / "retrain" / "app.py"
    assert assets.event_file("retrain_schedule.json") == REPO / "events" / "retrain_schedule.json"
    with pytest.raises(assets.MissingAsset, match=r"^the sample event nope\.json is missing"):
        assets.event_file("nope.json")


def test_an_output_not_ours_or_overlapping_the_data_is_refused_before_any_work(
    tmp_path, synthetic_csv, capsys
):
    from tests.conftest import lmrec_cli as main

    def refused(output: Path, data: Path = synthetic_csv) -> str:
        code = main(["train", "--data", str(data), "--output", str(output)])
        said = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(said) == 1 and said[0].startswith("error: "), said
        return said[0]

    # GIVEN a folder of the user's own, a data folder, a plain file
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    afile = tmp_path / "afile"
    afile.write_text("")
    before = sorted(p.name for p in tmp_path.iterdir())
    # THEN none of them can be the output, and each refusal says why in one line
    assert "not an lmrec job's output" in refused(mine)
    assert "overlap" in refused(synthetic_csv.parent)  # the data's own folder
    assert "overlap" in refused(synthetic_csv.parent / "model", synthetic_csv.parent)
    assert "overlap" in refused(tmp_path)  # the data would be inside the output
    assert "is a file" in refused(afile)
    assert "cannot be written: Not a directory" in refused(afile / "model")
    # a folder holding only what a killed run of ours left is no one else's: accepted (the
    # bad seed below is the next check, so nothing trains)
    killed = tmp_path / "killed"
    (killed / ".lmrec-partial").mkdir(parents=True)
    args = ["train", "--data", str(synthetic_csv), "--output", str(killed), "--set", "seed=-1"]
    assert main(args) == 2 and "seed must be in" in capsys.readouterr().err
    before = sorted([*before, "killed"])
    # and nothing was touched or left behind
    assert (mine / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert [p.name for p in synthetic_csv.parent.iterdir()] == [synthetic_csv.name]


def test_a_run_that_fails_while_exporting_keeps_the_previous_model(
    tmp_path, synthetic_csv, monkeypatch, capsys
):
    from tests.conftest import lmrec_cli as main
    from training import pipeline

    out = tmp_path / "my-model"
    args = ["train", "--data", str(synthetic_csv), "--output", str(out), *TEACHER_ONLY]
    # GIVEN a finished run's output
    assert main(args) == 0
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "metrics.json" in kept

    # WHEN the next run fails halfway through writing its output
    def broken(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(pipeline, "write_report", broken)
    assert main([*args, "--fresh"]) == 1
    assert "disk full" in capsys.readouterr().err.strip().splitlines()[-1]
    # THEN the previous output is there, file for file
    assert {p.name: p.read_bytes() for p in out.iterdir()} == kept
    # and a run that succeeds replaces it whole, leaving no staging folder
    monkeypatch.undo()
    assert main([*args, "--fresh"]) == 0
    assert (out / "metrics.json").read_bytes() != kept["metrics.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "my-model",
        "my-model-checkpoints",
        synthetic_csv.parent.name,
    ]


def test_ctrl_c_outside_a_training_loop_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    from lmrec.local import cli, commands

    def interrupted(args, argv):  # Ctrl-C while the data is read, before any epoch
        raise KeyboardInterrupt

    code = cli.main(["train", "--data", str(tmp_path / "d.csv")], training=interrupted)
    assert code == 130
    assert capsys.readouterr().err.strip() == "interrupted: lmrec train stopped"

    def serving(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "cmd_serve", serving)
    assert cli.main(["serve", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted: lmrec serve stopped"


def test_ctrl_c_in_the_torchrun_launcher_waits_for_it_and_exits_130(monkeypatch):
    from training import cli

    class Launcher:  # torchrun: Ctrl-C reaches it and this process together
        waits = 0

        def __init__(self, cmd):
            pass

        def wait(self):
            Launcher.waits += 1
            if Launcher.waits == 1:
                raise KeyboardInterrupt
            return -2

        def send_signal(self, sig):
            pass

    monkeypatch.setattr(cli.subprocess, "Popen", Launcher)
    assert cli._launch(["torchrun"]) == 130
    assert Launcher.waits == 2  # the workers were let stop before the line


def test_a_second_job_on_an_output_in_use_is_refused_and_touches_nothing(tmp_path, synthetic_csv):
    out = tmp_path / "m"
    holder = subprocess.Popen(  # a job still running on `out` (it holds the lock all along)
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\n"
            "from training.model_swap import hold\nhold(Path(sys.argv[1]))\n"
            "print('held', flush=True)\n"
            "time.sleep(60)",
            str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (out / "metrics.json").write_text("{}")  # what the running job has written so far
        proc = run_training(["train", "--data", str(synthetic_csv), "--output", str(out)])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            f"error: --output {out} is the output of a job still running (pid {holder.pid}); "
            "wait for it, or give another --output"
        )
        assert sorted(p.name for p in out.iterdir()) == [".lmrec-lock", "metrics.json"]
    finally:
        holder.kill()
        holder.wait()
