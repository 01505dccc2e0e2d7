"""Build the Lambda layers without Docker and report their unzipped sizes (JSON).

deps: layers/deps/requirements.txt installed for the Lambda runtime with pip's
      --platform/--python-version/--only-binary, so wheels match Amazon Linux x86_64.
core: layers/core/lmrec copied as python/lmrec.

    .venv/bin/python layers/build.py [--python-version 3.12] [--out build/layers]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_deps(out: Path, python_version: str, platform: str) -> Path:
    target = out / "deps" / "python"
    shutil.rmtree(target.parent, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--only-binary=:all:",
            "--platform",
            platform,
            "--implementation",
            "cp",
            "--python-version",
            python_version,
            "--target",
            str(target),
            "-r",
            str(REPO / "layers" / "deps" / "requirements.txt"),
        ],
        check=True,
    )
    # Not needed at run time: tests and caches inside packages.
    for junk in list(target.rglob("__pycache__")) + list(target.rglob("tests")):
        shutil.rmtree(junk, ignore_errors=True)
    return target


def build_core(out: Path) -> Path:
    target = out / "core" / "python" / "lmrec"
    shutil.rmtree(target.parent, ignore_errors=True)
    shutil.copytree(
        REPO / "layers" / "core" / "lmrec", target, ignore=shutil.ignore_patterns("__pycache__")
    )
    return target.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "build" / "layers"))
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--platform", default="manylinux2014_x86_64")
    args = parser.parse_args()
    out = Path(args.out)
    deps = build_deps(out, args.python_version, args.platform)
    core = build_core(out)
    forbidden = [p.name for p in deps.iterdir() if p.name.startswith("torch")]
    if forbidden:
        raise SystemExit(f"torch must not be in the deps layer: {forbidden}")
    print(
        json.dumps(
            {
                "deps_unzipped_bytes": tree_size(deps),
                "core_unzipped_bytes": tree_size(core),
                "lambda_limit_bytes": 250 * 1024 * 1024,
                "python_version": args.python_version,
                "platform": args.platform,
                "deps_dir": str(deps),
                "core_dir": str(core),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
