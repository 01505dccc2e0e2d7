"""Build the Lambda layers without Docker and report their unzipped sizes (JSON).

deps: layers/deps/requirements.lock (exact versions and wheel hashes) installed for the
      Lambda runtime with pip's --platform/--python-version/--only-binary, so wheels match
      Amazon Linux 2023 x86_64 (glibc 2.34: manylinux_2_34, _2_28 and 2014 wheels run there;
      numpy >= 2.3 ships no manylinux2014 wheel, so 2014 alone silently picks an older one).
      `make lock` (.ci/lock.py) writes that file from layers/deps/requirements.txt, each
      version the one of the test environment's lock, so the layer ships what the tests ran;
      tests/test_locks.py fails when they drift apart.
core: layers/core/lmrec copied as python/lmrec.

Both ship bytecode compiled ahead of time by an interpreter of the runtime's version.
Lambda mounts layers read-only, so Python cannot cache what it compiles: a layer of
sources alone is compiled again on every cold start. `sam build` with a runtime BuildMethod
ships sources only (0 .pyc files in its deps layer); measured with python3.12 on the 2-core
dev machine, importing numpy, FastAPI, Mangum, pydantic-settings and Powertools from it took
1.1-1.2 s, from the same layer with bytecode 0.42-0.48 s. The .pyc files are
"unchecked-hash": used without comparing source timestamps, which a zip does not keep
reliably, and a layer version never changes after it is published.

    .venv/bin/python layers/build.py [--python-version 3.12] [--out build/layers]
    .venv/bin/python layers/build.py --layer deps --dest DIR     (what `sam build` runs)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("deps", "core")
DEPS = REPO / "layers" / "deps"
LOCK = DEPS / "requirements.lock"
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34), x86_64.
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64")


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pip_for_lambda(python_version: str, platforms: list[str]) -> list[str]:
    flags = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python_version]
    for platform in platforms:
        flags += ["--platform", platform]
    return [sys.executable, "-m", "pip", *flags]


def build_deps(target: Path, python_version: str, platforms: list[str]) -> None:
    """The third-party runtime, as python/ under `target`, exactly as locked."""
    pip = pip_for_lambda(python_version, platforms)
    subprocess.run(
        [
            *pip[:3],
            "install",
            "--quiet",
            "--no-compile",  # compiled below by the runtime's own Python version
            "--no-deps",  # the lock lists every distribution
            "--require-hashes",
            *pip[3:],
            "--target",
            str(target),
            "-r",
            str(LOCK),
        ],
        check=True,
    )
    # Not needed at run time: tests and caches inside packages.
    for junk in list(target.rglob("__pycache__")) + list(target.rglob("tests")):
        shutil.rmtree(junk, ignore_errors=True)


# lmrec.local is developer tooling (local stack, demo, `lmrec serve`): not shipped to Lambda.
CORE_EXCLUDED = ("__pycache__", "local")


def build_core(target: Path) -> None:
    shutil.copytree(
        REPO / "layers" / "core" / "lmrec",
        target / "lmrec",
        ignore=shutil.ignore_patterns(*CORE_EXCLUDED),
    )


def interpreter_version(candidate: str) -> str | None:
    """The X.Y version `candidate` runs as, or None when it does not run: a pyenv shim for a
    version that is not installed exits 127, a stale link raises OSError."""
    try:
        proc = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def candidates(version: str) -> list[str]:
    """Every place a python{version} may be, in order: this interpreter, each python{version}
    on PATH (not only the first: that one may be a shim), then pyenv's installed versions."""
    found = []
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        found.append(sys.executable)
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = shutil.which(f"python{version}", path=folder) if folder else None
        if path:
            found.append(path)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found += [str(p) for p in sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)]
    return list(dict.fromkeys(found))


def find_interpreter(version: str, explicit: str | None) -> str | None:
    """A Python of the runtime's version that actually runs: bytecode is specific to it
    (cpython-312.pyc). An explicit --python is returned as given and checked later."""
    if explicit:
        return explicit
    return next((c for c in candidates(version) if interpreter_version(c) == version), None)


def compile_bytecode(target: Path, interpreter: str, version: str) -> int:
    """Compile every module under `target`; returns the number of .pyc files written."""
    actual = interpreter_version(interpreter)
    if actual is None:
        raise SystemExit(f"{interpreter} does not run (it should be Python {version})")
    if actual != version:
        raise SystemExit(f"{interpreter} is Python {actual}; the layer targets {version}")
    subprocess.run(
        [
            interpreter,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            # Tracebacks name the path the layer has in Lambda, not this build directory.
            "-s",
            str(target),
            "-p",
            "/opt/python",
            str(target),
        ],
        check=False,  # a package may ship a .py for another Python version (a template)
        stdout=subprocess.DEVNULL,
    )
    return sum(1 for _ in target.rglob("*.pyc"))


def build(layer: str, dest: Path, args: argparse.Namespace) -> dict:
    """Layer `layer` as dest/python/..., the layout Lambda expects under /opt."""
    # The interpreter first: without one, `sam build` stops in a second with one line
    # instead of after pip has downloaded the whole runtime.
    interpreter = find_interpreter(args.python_version, args.python)
    if interpreter is None and args.require_bytecode:
        raise SystemExit(
            f"no working python{args.python_version} found to compile the {layer} layer's "
            "bytecode (looked on PATH and in pyenv's versions; install it or pass --python PATH)"
        )
    target = dest / "python"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    if layer == "deps":
        build_deps(target, args.python_version, args.platform)
        forbidden = [p.name for p in target.iterdir() if p.name.startswith("torch")]
        if forbidden:
            raise SystemExit(f"torch must not be in the deps layer: {forbidden}")
    else:
        build_core(target)
    if interpreter is None:
        print(
            f"warning: no python{args.python_version} found (--python PATH): the {layer} "
            "layer ships sources only and Lambda will compile them on every cold start",
            file=sys.stderr,
        )
        pyc = 0
    else:
        pyc = compile_bytecode(target, interpreter, args.python_version)
    return {
        "dir": str(target),
        "unzipped_bytes": tree_size(target),
        "pyc_files": pyc,
        "python": interpreter,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "build" / "layers"), help="one dir per layer")
    parser.add_argument("--layer", choices=LAYERS, help="build only this layer")
    parser.add_argument("--dest", help="with --layer: put python/ here (sam's ARTIFACTS_DIR)")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--python", help="interpreter of that version, to compile bytecode")
    parser.add_argument(
        "--platform",
        action="append",
        help=f"wheel platform tag, repeatable (default: {', '.join(PLATFORMS)})",
    )
    parser.add_argument(
        "--require-bytecode",
        action="store_true",
        help="fail instead of shipping sources only when that interpreter is missing",
    )
    args = parser.parse_args()
    args.platform = args.platform or list(PLATFORMS)
    if args.dest and not args.layer:
        parser.error("--dest needs --layer")
    layers = [args.layer] if args.layer else list(LAYERS)
    report: dict = {
        "python_version": args.python_version,
        "platform": args.platform,
        "lambda_limit_bytes": 250 * 1024 * 1024,
    }
    for layer in layers:
        dest = Path(args.dest) if args.dest else Path(args.out) / layer
        report[layer] = build(layer, dest, args)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
