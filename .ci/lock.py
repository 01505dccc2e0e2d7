"""The project's three locks, from one resolution (`make lock`), and their checks.

  .ci/requirements.lock       what `make setup` installs (and CI): the runtime, the training
                              and dev extras, and torch's own dependencies; torch itself is
                              installed beside it, exactly TORCH, from the machine's CPU wheel
                              (Makefile). Universal: any OS, Python >= 3.11, hashes of every
                              wheel of each pinned version.
  training/requirements.lock  what the training image installs (training/Dockerfile): runtime
                              + training extra, torch 2.13.0 with its CUDA wheels, Linux x86_64,
                              Python 3.11.
  layers/deps/requirements.lock  the Lambda deps layer (layers/build.py): layers/deps/
                              requirements.txt for Python 3.12 on Amazon Linux 2023 x86_64.

The last two are resolved with the first as constraints, so a package has one version in all
three: the tests run what the layer and the image ship. Resolution is uv's (`uv pip compile`,
installed from the lock itself); nothing upstream changes an install until someone runs
`make lock` and commits the result. Each lock starts with the sha256 of its inputs, so a test
(tests/test_locks.py) fails when pyproject.toml or requirements.txt changed without a relock.

    .venv/bin/python .ci/lock.py            write the three locks (needs uv and the network),
                                            keeping every version already pinned
    .venv/bin/python .ci/lock.py --upgrade  the same, with the newest versions allowed
    .venv/bin/python .ci/lock.py --check    inputs unchanged since the last `make lock`
    python .ci/lock.py --bootstrap          print uv's pinned entry (for `make setup`)
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_LOCK = REPO / ".ci" / "requirements.lock"
IMAGE_LOCK = REPO / "training" / "requirements.lock"
LAYER_LOCK = REPO / "layers" / "deps" / "requirements.lock"
LAYER_INPUT = REPO / "layers" / "deps" / "requirements.txt"
TORCH = "torch"
INPUTS_LINE = "# inputs-sha256: "
# One entry of a uv lock: "name==version [; marker] \" then its hash lines.
ENTRY = re.compile(
    r"^([A-Za-z0-9_.-]+)==(\S+?)(?: ; (.+?))? \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
    re.M,
)


def pyproject_requirements(extras: tuple[str, ...]) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def torch_dependencies() -> list[str]:
    """torch's own requirements, read from the torch installed here (the wheel setup uses):
    they are locked like everything else, and torch is installed after them with --no-deps."""
    from importlib.metadata import requires

    return sorted(r for r in requires(TORCH) or [] if "extra ==" not in r)


def without_torch(reqs: list[str]) -> list[str]:
    return [r for r in reqs if not re.match(rf"{TORCH}\b", r)]


def dev_inputs() -> list[str]:
    return without_torch(pyproject_requirements(("training", "dev"))) + torch_dependencies()


def image_inputs() -> list[str]:
    return pyproject_requirements(("training",))


def layer_inputs() -> list[str]:
    lines = LAYER_INPUT.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def digest(inputs: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(inputs)).encode()).hexdigest()


LOCKS = {  # lock -> (its inputs, looked up when called; uv pip compile target flags)
    DEV_LOCK: (
        "dev_inputs",
        ["--universal", "--python-version", "3.11", "--fork-strategy", "fewest"],
    ),
    IMAGE_LOCK: (
        "image_inputs",
        ["--python-platform", "x86_64-manylinux_2_28", "--python-version", "3.11"],
    ),
    LAYER_LOCK: (
        "layer_inputs",
        ["--python-platform", "x86_64-manylinux_2_34", "--python-version", "3.12"],
    ),
}
TITLES = {
    DEV_LOCK: "The development and CI environment (`make setup`), torch aside",
    IMAGE_LOCK: "The training image (training/Dockerfile), torch and its CUDA wheels included",
    LAYER_LOCK: "The Lambda deps layer (layers/build.py, `sam build`)",
}


def entries(lock: Path) -> dict[str, list[tuple[str, str | None]]]:
    """name -> [(version, marker)], from a lock this script wrote."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for name, version, marker, _ in ENTRY.findall(lock.read_text()):
        found.setdefault(name.lower(), []).append((version, marker or None))
    return found


def compile_lock(lock: Path, uv: str, upgrade: bool) -> None:
    inputs_name, target = LOCKS[lock]
    inputs = globals()[inputs_name]()
    # The inputs in build/ (ignored by git) under a fixed name: the lock's "# via" lines
    # name it, so a relock with the same result writes the same file.
    source = REPO / "build" / "lock" / f"{inputs_name}.in"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("\n".join(inputs) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        if lock.exists() and not upgrade:  # uv keeps the versions an existing output pins
            out.write_text(lock.read_text())
        cmd = [uv, "pip", "compile", str(source.relative_to(REPO)), "--generate-hashes"]
        cmd += ["--quiet", "--no-header", "--annotation-style", "line", *target, "-o", str(out)]
        if lock != DEV_LOCK:  # one version of each package in all three locks
            cmd += ["--constraint", str(DEV_LOCK.relative_to(REPO))]
        subprocess.run(cmd, check=True, cwd=REPO)
        body = out.read_text()
    header = (
        f"# {TITLES[lock]}: every distribution pinned, with hashes.\n"
        "# Written by `make lock` (.ci/lock.py); do not edit by hand.\n"
        f"{INPUTS_LINE}{digest(inputs)}\n"
    )
    lock.write_text(header + body)


def stale() -> list[str]:
    """The locks whose inputs changed since they were written."""
    out = []
    for lock, (inputs_name, _) in LOCKS.items():
        recorded = next(
            (ln for ln in lock.read_text().splitlines() if ln.startswith(INPUTS_LINE)), ""
        )
        if recorded != INPUTS_LINE + digest(globals()[inputs_name]()):
            out.append(str(lock.relative_to(REPO)))
    return out


def bootstrap_entry(name: str = "uv") -> str:
    """The lock's entry for `name` as a requirements file (pip --require-hashes reads it)."""
    match = next(
        (m for m in ENTRY.finditer(DEV_LOCK.read_text()) if m.group(1).lower() == name), None
    )
    if match is None:
        raise SystemExit(f"{name} is not in {DEV_LOCK.relative_to(REPO)}; run `make lock`")
    return match.group(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if an input changed")
    parser.add_argument("--bootstrap", action="store_true", help="print uv's locked entry")
    parser.add_argument(
        "--upgrade", action="store_true", help="newest versions (default: keep existing pins)"
    )
    parser.add_argument("--uv", default=str(Path(sys.executable).parent / "uv"), help="uv to run")
    args = parser.parse_args()
    if args.bootstrap:
        sys.stdout.write(bootstrap_entry())
        return
    if args.check:
        changed = stale()
        if changed:
            raise SystemExit(f"inputs changed since the last `make lock`: {', '.join(changed)}")
        print("locks are up to date with their inputs")
        return
    for lock in LOCKS:  # the dev lock first: the others are constrained by it
        compile_lock(lock, args.uv, args.upgrade)
        print(f"wrote {lock.relative_to(REPO)}")


if __name__ == "__main__":
    main()
