"""The `lmrec` command line as a person meets it: help, version, mistakes, serve a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx

from tests.conftest import REPO, free_port, run_training


def test_version_and_help_show_defaults_without_importing_torch():
    proc = run_training(["--version"])
    assert proc.returncode == 0 and proc.stdout.startswith("lmrec ")
    code = (
        "import sys\nfrom training.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
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


def test_serve_a_trained_folder_prints_its_url_and_answers(trained_bundle):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "training", "serve", str(trained_bundle), "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert line.startswith("serving model ") and url in line
        for _ in range(100):  # the URL is printed before uvicorn binds
            try:
                reply = httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert reply.status_code == 200 and reply.json()["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(10)
