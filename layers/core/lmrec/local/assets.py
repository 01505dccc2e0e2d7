"""The files the local stack runs besides the lmrec package, found one way from a checkout
and from an installed wheel.

- The Lambda functions' code (functions/<name>/app.py) and the events their rules deliver
  (events/*.json) live at the top of the repository, where SAM deploys functions/<name>/
  from. A wheel carries copies as package data under lmrec/local/packaged/ (pyproject.toml's
  package-dir), so an installed `lmrec demo` runs from any directory.
- The demo's sample data is package data of `training` (training/sample_data/), a package in
  both cases.

ROOT is chosen once: the checkout this module sits in when there is one (the folder holding
template.yaml, four levels up), so a checkout always runs its own files and never an installed
copy; otherwise the installed package data. A file missing there is a MissingAsset: one line
that names it, for the CLI to print.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_HERE = Path(__file__).resolve().parent  # .../lmrec/local
_CHECKOUT = _HERE.parents[3]  # layers/core/lmrec/local -> the repository
ROOT = (
    _CHECKOUT
    if (_CHECKOUT / "template.yaml").is_file()
    else Path(str(resources.files("lmrec.local"))) / "packaged"
)


class MissingAsset(FileNotFoundError):
    """A file the local stack needs is not where this installation keeps it."""


def _present(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingAsset(f"{what} is missing from this lmrec installation: {path}")
    return path


def function_code(name: str) -> Path:
    """functions/<name>/app.py, the Lambda function's entry."""
    return _present(ROOT / "functions" / name / "app.py", f"the {name} function's code")


def event_file(name: str) -> Path:
    """events/<name>, an event as the function's EventBridge rule delivers it."""
    return _present(ROOT / "events" / name, f"the sample event {name}")


def training_file(*parts: str) -> Path:
    """A file the training package ships (sample data, presets), wherever it is installed."""
    ref = resources.files("training")  # a regular package, so a real directory
    return _present(Path(str(ref)).joinpath(*parts), "/".join(("training", *parts)))
