"""The three locks (.ci/lock.py): the test environment is the dev lock, the Lambda layer and
the training image ship the same versions, and no input changed without a relock."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import sys

from packaging.markers import Marker
from packaging.requirements import Requirement

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("lock", REPO / ".ci" / "lock.py")
assert spec and spec.loader
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)

# Installed beside the lock, not from it: torch (the Makefile's exact CPU wheel), lmrec itself
# (editable), and the venv's own pip.
BESIDE_THE_LOCK = {"torch", "lmrec", "pip"}


def applies(marker: str | None) -> bool:
    return marker is None or Marker(marker).evaluate()


def installed() -> dict[str, str]:
    return {
        d.metadata["Name"].lower().replace("_", "-"): d.version
        for d in importlib.metadata.distributions()
        if d.metadata["Name"]
    }


def here(entries: dict) -> dict[str, str]:
    """The version of each entry that applies to this interpreter and platform."""
    return {
        name: version
        for name, pins in entries.items()
        for version, marker in pins
        if applies(marker)
    }


def test_every_lock_entry_is_pinned_with_hashes():
    for path in lock.LOCKS:
        text = path.read_text()
        names = [ln.split("==")[0] for ln in text.splitlines() if re.match(r"^[A-Za-z0-9]", ln)]
        assert names and len(names) == sum(len(v) for v in lock.entries(path).values()), path


def test_the_test_environment_is_the_dev_lock():
    # make setup installs the dev lock exactly: a release upstream cannot reach the tests
    want = here(lock.entries(lock.DEV_LOCK))
    have = {n: v for n, v in installed().items() if n not in BESIDE_THE_LOCK}
    drift = {
        n: (want.get(n), have.get(n))
        for n in want.keys() | have.keys()
        if want.get(n) != have.get(n)
    }
    assert not drift, (
        f"installed differs from .ci/requirements.lock (lock, installed): {drift}; run `make setup`"
    )


def test_one_version_of_each_package_in_every_lock():
    dev = lock.entries(lock.DEV_LOCK)
    # every Python the lock allows gets the same versions (uv's --fork-strategy fewest)
    assert all(len({v for v, _ in pins}) == 1 for pins in dev.values()), dev
    dev_versions = {name: pins[0][0] for name, pins in dev.items()}
    for other in (lock.LAYER_LOCK, lock.IMAGE_LOCK):
        differ = {
            name: (dev_versions[name], pins[0][0])
            for name, pins in lock.entries(other).items()
            if name in dev_versions and pins[0][0] != dev_versions[name]
        }
        assert not differ, f"{other.name} differs from the dev lock: {differ}"
    # the layer ships nothing the tests did not install
    assert set(lock.entries(lock.LAYER_LOCK)) <= set(dev)


def test_the_locks_meet_their_declared_ranges():
    dev = here(lock.entries(lock.DEV_LOCK))
    for text in lock.dev_inputs() + lock.layer_inputs():
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        if req.marker is None or req.marker.evaluate():
            assert name in dev and req.specifier.contains(dev[name], prereleases=True), (
                text,
                dev.get(name),
            )
    # torch: one version in pyproject, the Makefile and the image lock, never in the layer
    makefile_torch = re.search(r"^TORCH\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.M)
    assert makefile_torch and f"torch=={makefile_torch[1]}" in lock.image_inputs()
    assert lock.entries(lock.IMAGE_LOCK)["torch"][0][0] == makefile_torch[1]
    assert not any(name.startswith("torch") for name in lock.entries(lock.LAYER_LOCK))


def test_no_input_changed_since_the_last_relock():
    proc = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "lock.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_a_changed_input_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "layer_inputs", lambda: ["numpy>=1.26,<3", "requests"])
    assert lock.stale() == ["layers/deps/requirements.lock"]


def test_setup_bootstraps_uv_from_the_lock():
    entry = lock.bootstrap_entry()
    assert entry.startswith("uv==") and "--hash=sha256:" in entry
