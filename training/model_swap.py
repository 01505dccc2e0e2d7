"""A job's output written over the previous one with no moment where neither is whole.

The job writes into <model_dir>/.lmrec-partial (the stage; inside, not beside: the model dir
is the one place known writable, a container may mount it on a read-only root, and renames
within it never cross file systems). `replace_dir` then, by renames:
  1. writes the old files' names to .lmrec-previous/.journal.json (via a temporary name),
  2. moves the old files into .lmrec-previous,
  3. moves the staged files in: the stage is then empty, and the swap done,
  4. deletes .lmrec-previous and the stage.
Whether a swap finished is read from the stage alone (empty or gone: done). An exception
(Ctrl-C included) in 2-3 is undone at once; a kill (SIGKILL, a power cut) by `recover`, which
the next job runs before anything else. Undoing is idempotent: an interrupted undo is
finished by the next one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGE, PREVIOUS, JOURNAL = ".lmrec-partial", ".lmrec-previous", ".journal.json"
LOCK = ".lmrec-lock"  # held by the running job: a second job on the same dir is refused
_held: dict[Path, tuple[int, bool]] = {}  # locked dir: (descriptor, whether we made the dir)


class InUse(RuntimeError):
    """Another running job holds the model dir."""


def hold(model_dir: Path) -> None:
    """Lock `model_dir` until `release` (the job's end) or this process's exit (the OS
    releases it then, a kill included), before anything in it is touched: two jobs writing
    one dir would mix their files, and one's `recover` would undo the other's swap half
    way. InUse when held."""
    import fcntl
    import os

    if model_dir.resolve() in _held:  # an earlier job of this process (one at a time)
        return
    made = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(model_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise InUse(f"{model_dir} is the output of a job still running (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held[model_dir.resolve()] = (fd, made)


def release() -> None:
    """Let go of every dir this process holds; one the job left with nothing but the lock (a
    refused or failed run) is left as it was found: the lock removed, the dir too if it was
    made for the job."""
    import os

    for model_dir, (fd, made) in list(_held.items()):
        if [c.name for c in model_dir.iterdir()] == [LOCK]:
            (model_dir / LOCK).unlink()
            if made:
                model_dir.rmdir()
        os.close(fd)
        del _held[model_dir]


def is_own(child: Path) -> bool:
    """A folder of this module's in a model dir (not the user's, not the model's)."""
    return child.name in (STAGE, PREVIOUS, LOCK)


@contextmanager
def staged(model_dir: Path) -> Iterator[Path]:
    """A stage to write into, swapped into `model_dir` when the block ends well and removed
    when it does not (the previous model stays)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    recover(model_dir)
    stage = model_dir / STAGE
    shutil.rmtree(stage, ignore_errors=True)  # an unfinished job's, its swap undone above
    stage.mkdir()
    try:
        yield stage
        replace_dir(stage, model_dir)
    except BaseException:
        if not (model_dir / PREVIOUS).exists():  # else an undo was cut short: recover's
            shutil.rmtree(stage, ignore_errors=True)
        raise


def replace_dir(stage: Path, model_dir: Path) -> None:
    previous = model_dir / PREVIOUS
    previous.mkdir()
    old = [c.name for c in model_dir.iterdir() if not is_own(c)]
    try:
        tmp = previous / (JOURNAL + ".tmp")
        tmp.write_text(json.dumps(old))
        tmp.rename(previous / JOURNAL)
        for name in old:
            (model_dir / name).rename(previous / name)
        for child in list(stage.iterdir()):
            child.rename(model_dir / child.name)
    except BaseException:
        _undo(model_dir, previous)
        shutil.rmtree(previous, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)  # the new model is in: a leftover is recover's
    shutil.rmtree(stage, ignore_errors=True)


def recover(model_dir: Path) -> None:
    """Finish what a killed swap left: undo it if the stage still holds files, then remove
    the swap's folders."""
    previous, stage = model_dir / PREVIOUS, model_dir / STAGE
    if not previous.is_dir():
        return
    if stage.is_dir() and any(stage.iterdir()):
        _undo(model_dir, previous)
    shutil.rmtree(previous, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def _undo(model_dir: Path, previous: Path) -> None:
    """The old model back in place: the new files moved in are removed, the old ones moved
    back. Without a journal nothing was moved yet (it is written first)."""
    journal = previous / JOURNAL
    if not journal.is_file():
        return
    old = json.loads(journal.read_text())
    for child in list(model_dir.iterdir()):
        if not is_own(child) and child.name not in old:
            _remove(child)  # a new file: the old model had no such name
    for name in old:
        if (previous / name).exists():
            if (model_dir / name).exists():
                _remove(model_dir / name)  # the new file of that name
            (previous / name).rename(model_dir / name)


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()
