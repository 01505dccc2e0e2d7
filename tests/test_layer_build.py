"""layers/build.py: the core layer ships bytecode compiled for the runtime's Python."""

from __future__ import annotations

import json
import marshal
import subprocess
import sys

from tests.conftest import REPO

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


BUILD = [sys.executable, str(REPO / "layers" / "build.py"), "--layer", "core"]


def build_core(dest, *extra: str) -> dict:
    out = subprocess.run(
        [*BUILD, "--dest", str(dest), "--python-version", VERSION, *extra],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def test_core_layer_ships_unchecked_bytecode_named_for_opt_python(tmp_path):
    # WHEN the core layer is built for this interpreter's version
    report = build_core(tmp_path)
    # THEN every module has bytecode beside it, under the layout Lambda mounts at /opt
    sources = sorted((tmp_path / "python" / "lmrec").rglob("*.py"))
    tag = sys.implementation.cache_tag
    assert report["core"]["pyc_files"] == len(sources) > 10
    # and the developer tooling (local stack, demo, `lmrec serve`) stays out of Lambda
    assert not (tmp_path / "python" / "lmrec" / "local").exists()
    for src in sources:
        pyc = src.parent / "__pycache__" / f"{src.stem}.{tag}.pyc"
        raw = pyc.read_bytes()
        # flags 0b01: hash-based, not checked against the source (PEP 552)
        assert int.from_bytes(raw[4:8], "little") == 0b01, pyc
        code = marshal.loads(raw[16:])
        assert code.co_filename == f"/opt/python/{src.relative_to(tmp_path / 'python')}"


def test_another_python_version_is_refused_not_silently_mixed(tmp_path):
    other = "3.99" if VERSION != "3.99" else "3.98"
    proc = subprocess.run(
        [*BUILD, "--dest", str(tmp_path), "--python-version", other, "--python", sys.executable],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert f"is Python {VERSION}; the layer targets {other}" in proc.stderr


def test_sam_build_fails_rather_than_ship_sources_without_the_runtime_python(tmp_path):
    # GIVEN no interpreter of the target version anywhere it looks
    env = {"PATH": "/nonexistent", "PYENV_ROOT": str(tmp_path / "no-pyenv")}
    cmd = [*BUILD, "--dest", str(tmp_path / "out"), "--python-version", "3.98"]
    # WHEN built as `sam build` builds it, THEN it stops with one line naming the fix
    strict = subprocess.run([*cmd, "--require-bytecode"], capture_output=True, text=True, env=env)
    assert strict.returncode == 1
    assert strict.stderr.strip() == (
        "no working python3.98 found to compile the core layer's bytecode "
        "(looked on PATH and in pyenv's versions; install it or pass --python PATH)"
    )
    # AND without the flag (make layer on a laptop) it ships sources and says so
    lenient = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert lenient.returncode == 0, lenient.stderr
    assert json.loads(lenient.stdout)["core"]["pyc_files"] == 0
    assert "ships sources only" in lenient.stderr


def fake_python(folder, body: str):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "python3.98"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


SHIM = (  # what pyenv's shim does for a version that is not installed
    'echo "pyenv: python3.98: command not found" >&2\n'
    "echo \"The 'python3.98' command exists in these Python versions: 3.98.1\" >&2\n"
    "exit 127\n"
)


def test_a_pyenv_shim_first_on_path_is_skipped_for_a_python_that_runs(tmp_path):
    # GIVEN PATH whose first python3.98 is a pyenv shim that exits 127, and a later one that
    # runs (this interpreter, answering the version probe as 3.98)
    fake_python(tmp_path / "shims", SHIM)
    real = fake_python(
        tmp_path / "bin",
        f'case "$2" in *version_info*) echo 3.98; exit 0;; esac\nexec "{sys.executable}" "$@"\n',
    )
    env = {
        "PATH": f"{tmp_path / 'shims'}:{tmp_path / 'bin'}:/usr/bin:/bin",
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
    }
    cmd = [*BUILD, "--dest", str(tmp_path / "out"), "--python-version", "3.98"]
    # WHEN built as `sam build` builds it, THEN the build uses the one that runs
    proc = subprocess.run([*cmd, "--require-bytecode"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["core"]
    assert report["python"] == str(real) and report["pyc_files"] > 10


def test_only_a_shim_fails_with_one_line(tmp_path):
    fake_python(tmp_path / "shims", SHIM)
    env = {"PATH": f"{tmp_path / 'shims'}:/usr/bin:/bin", "PYENV_ROOT": str(tmp_path / "none")}
    cmd = [*BUILD, "--dest", str(tmp_path / "out"), "--python-version", "3.98"]
    proc = subprocess.run([*cmd, "--require-bytecode"], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "no working python3.98 found to compile the core layer's bytecode "
        "(looked on PATH and in pyenv's versions; install it or pass --python PATH)"
    ]
