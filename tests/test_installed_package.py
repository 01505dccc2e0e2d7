"""lmrec as a user installs it: the wheel built from this checkout, installed (not editable)
into a fresh virtual environment, run from an empty folder outside any checkout. The demo's
sample data, the Lambda functions, their events and the training job must all come from the
installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import LEARNABLE_HP, REPO, synthetic_rows, write_csv

pytestmark = pytest.mark.slow

# Upload, retrain, train, promote, then one recommendation through the API function: the
# local stack as `lmrec demo` drives it, on a small synthetic log instead of MovieLens.
STACK_RUN = """
import importlib.util, json, sys
from pathlib import Path
import lmrec
from lmrec import store
from lmrec.local import assets
from lmrec.local.stack import LambdaContext, LocalStack, event_from_file, load_function

data, hp = Path(sys.argv[1]), json.loads(sys.argv[2])
stack = LocalStack(Path("stack").resolve(), hyperparameters=hp, quiet_functions=True).start()
try:
    stack.upload(data, "data/interactions/part-0001.csv")
    started = stack.retrain("retrain_s3_object_created.json")
    decisions = stack.run_pending_jobs()
    pointer = json.loads(store.read_bytes(stack.store_uri + "/models/lmrec/production.json"))
    event = event_from_file("api_post_recommendations.json")
    event["body"] = json.dumps({"user_id": "u1", "k": 5})
    reply = load_function("api").handler(event, LambdaContext())
finally:
    stack.stop()
print("RESULT " + json.dumps({
    "lmrec": lmrec.__file__,
    "assets": str(assets.ROOT),
    "training": importlib.util.find_spec("training").origin,
    "started": started["action"],
    "decisions": [d["action"] for d in decisions],
    "production": pointer["model_version"],
    "status": reply["statusCode"],
    "reply": json.loads(reply["body"]),
}))
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel of this checkout. Its dependencies are this
    environment's, through a .pth line: site-packages' own .pth files (the checkout's editable
    install among them) are not processed that way, so the checkout stays out of sight."""
    root = tmp_path_factory.mktemp("installed")
    wheels, venv = root / "wheels", root / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)]
    subprocess.run(build, check=True, cwd=root, capture_output=True)
    (wheel,) = wheels.glob("lmrec-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = [*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, env=clean_env())
    # after the install: pip would take the editable lmrec it sees there for this one
    (site_packages(venv) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def site_packages(venv: Path) -> Path:
    (path,) = (venv / "lib").glob("python3*/site-packages")
    return path


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH: nothing of the checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "OMP_NUM_THREADS": "1"}


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """A command of the venv (python, lmrec) in `cwd`."""
    command = [str(venv / "bin" / args[0]), *args[1:]]
    return subprocess.run(
        command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=600
    )


def test_an_installed_wheel_ships_the_demo_data_and_finds_it(venv, tmp_path):
    # WHEN the demo's files are resolved from an empty folder
    code = (
        "import gzip, sys\nfrom lmrec.local import assets, demo\n"
        "with gzip.open(demo.sample('interactions.csv.gz'), 'rt') as fh:\n"
        "    print(fh.readline().strip())\n"
        "print(demo.sample('items.csv.gz'))\nprint(assets.function_code('api'))\n"
        "print(assets.event_file('retrain_schedule.json'))\nprint('torch' in sys.modules)"
    )
    out = run(venv, tmp_path, "python", "-c", code)
    # THEN they come from the installed package, which also ships the presets
    assert out.returncode == 0, out.stderr
    header, *paths, torch_loaded = out.stdout.strip().splitlines()
    assert header.startswith("user_id,item_id") and torch_loaded == "False"
    site = str(site_packages(venv))
    assert all(p.startswith(site) for p in paths), paths
    assert (Path(site) / "training" / "presets" / "ml-100k.json").is_file()


def test_an_installed_lmrec_runs_the_local_stack_outside_a_checkout(venv, tmp_path):
    # GIVEN an empty folder and an interaction log
    data = write_csv(
        tmp_path / "data" / "interactions.csv",
        ["user_id", "item_id", "timestamp"],
        synthetic_rows(n_users=200, n_items=80, length=15, seed=1),
    )
    work = tmp_path / "work"
    work.mkdir()
    hp = {**LEARNABLE_HP, "transitions": "false"}
    # WHEN the installed lmrec uploads it, retrains, trains, promotes and is asked
    out = run(venv, work, "python", "-c", STACK_RUN, str(data), json.dumps(hp))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    # THEN every part came from the venv, a bundle is served and it recommends
    site = str(site_packages(venv))
    for part in ("lmrec", "assets", "training"):
        assert result[part].startswith(site), result
    assert result["started"] == "started" and result["decisions"] == ["promoted"], result
    assert result["status"] == 200, result
    reply = result["reply"]
    assert reply["model_version"] == result["production"]
    assert reply["strategy"] == "personalized" and len(reply["items"]) == 5
    assert (work / "stack" / "logs").is_dir()  # the stack's files under the folder it ran in


@pytest.mark.parametrize(
    ("packaged", "named"),
    [
        ("events/retrain_s3_object_created.json", "the sample event"),
        ("functions/promote/app.py", "the promote function's code"),
    ],
)
def test_a_missing_packaged_file_is_one_line(venv, tmp_path, packaged, named):
    # GIVEN an installation that lost one of its packaged files
    path = site_packages(venv) / "lmrec" / "local" / "packaged" / packaged
    kept = tmp_path / "kept"
    shutil.move(path, kept)
    try:
        # WHEN the demo starts
        out = run(venv, tmp_path, "lmrec", "demo", "--exit")
    finally:
        shutil.move(kept, path)
    # THEN it stops at once with one line naming the file, and exit code 2
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {named}") and line.endswith(str(path))
    assert "missing from this lmrec installation" in line
