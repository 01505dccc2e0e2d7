"""The `lmrec` command: the parser and dispatch of every subcommand.

`lmrec` (the console script) and `python -m training` (the SageMaker container's entry) both
run main(). `serve`, `publish`, `rollback` and `demo` come from lmrec.local.commands and
import no torch. `train`, `batch`, `sync-histories` and `erase` need torch, which nothing
under layers/ may import (the Lambda layers' rule, tests/test_serving_boundaries.py): their
arguments are checked here, then the console script hands the same command line to
`python -m training` in place (exec: the same process id, signals and exit code), whose
main() runs them through training.cli; a caller of main() gets them in a child process
unless it passes its own runner. Bad input ends with exit code 2 and one readable line.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Callable

# The whole job's budget of `lmrec train --quick`, in seconds (training/cli.py applies it).
QUICK_SECONDS = 60.0
# The subcommands whose work is done in training (torch), not in this package.
TRAINING_COMMANDS = ("train", "batch", "sync-histories", "erase")
# 128 + SIGINT, the shell's code for a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130
TrainingRunner = Callable[[argparse.Namespace, list[str]], int]

DESCRIPTION = "lmrec: train a sequential recommender, distil it, and serve it."


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help texts show each option's real default and keep the description's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _parser() -> argparse.ArgumentParser:
    from lmrec import __version__
    from lmrec.local import commands

    parser = argparse.ArgumentParser(prog="lmrec", description=DESCRIPTION, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"lmrec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train, evaluate and export a model",
        description=TRAIN_HELP.format(quick=QUICK_SECONDS),
        formatter_class=_Help,
    )
    train.add_argument("--data", help="interactions: CSV/Parquet file, directory or s3:// URI")
    train.add_argument("--items", help="optional item catalog (item_id + columns)")
    train.add_argument("--output", help="directory for the model outputs (the bundle)")
    train.add_argument(
        "--checkpoints", help="checkpoint directory (default: OUTPUT-checkpoints beside OUTPUT)"
    )
    train.add_argument("--hyperparameters", help="JSON file of hyperparameters (a preset)")
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one hyperparameter, repeatable (e.g. --set epochs=10); wins over the file",
    )
    train.add_argument(
        "--quick",
        action="store_true",
        help=f"a quick run: the whole job within {QUICK_SECONDS:g} s, every phase inside it "
        "(max_total_seconds; the epochs set stay ceilings)",
    )
    train.add_argument(
        "--fresh",
        action="store_true",
        help="start over: remove the checkpoints of an earlier run (by default a run with "
        "the same output, data and settings resumes from them)",
    )
    train.add_argument(
        "--failure-file",
        help="on failure, also write the reason to this file (the container always writes "
        "output/failure)",
    )
    batch = sub.add_parser(
        "batch", help="top-k for many users from a bundle, as Parquet", formatter_class=_Help
    )
    batch.add_argument("--bundle", required=True, help="bundle directory or s3:// prefix")
    batch.add_argument("--output", required=True, help="output prefix (local or s3://)")
    batch.add_argument("--users", default="all", help="CSV/Parquet with user_id, or 'all'")
    batch.add_argument(
        "--data", help="interactions the histories come from (else $LMREC_USER_STORE)"
    )
    batch.add_argument("--k", type=int, default=10, help="items per user")
    batch.add_argument(
        "--shard-index", type=int, help="this shard's index (default: from resourceconfig.json)"
    )
    batch.add_argument(
        "--shard-count", type=int, help="how many shards (default: from resourceconfig.json)"
    )
    # serve, publish, rollback and demo work on models, not on training: they live in
    # lmrec.local (not shipped in the Lambda layer) and import no torch.
    commands.add_commands(sub, _Help)
    _user_data_parsers(sub)
    for action in sub._choices_actions:  # each command's --help opens with its one line
        command = sub.choices[action.dest]
        command.description = command.description or action.help
    return parser


TRAIN_HELP = """Train the teacher, distil the student, evaluate them and write the bundle.

Locally:   lmrec train --data interactions.csv --output runs/my-model
           [--items items.csv] [--hyperparameters FILE.json] [--set KEY=VALUE ...]
           then: lmrec serve runs/my-model
Container: with no --data, follows the SageMaker contract under $SAGEMAKER_BASE_DIR
           (default /opt/ml): input/data/train, input/config/hyperparameters.json, model/.

Time: the job runs under a whole-job budget (max_total_seconds: auto from the data's size,
printed at the start); epochs, set or auto, are ceilings within it, and the students'
epochs follow the teacher's unless student_epochs is set. --quick: a {quick:g} s budget;
--set max_total_seconds=0: no budget (what the shipped presets set: they fix epochs).
Resume: checkpoints go to OUTPUT-checkpoints; a run with the same output, data and
settings continues from them (it says so); --fresh starts over.
"""


def _user_data_parsers(sub) -> None:
    sync = sub.add_parser(
        "sync-histories",
        help="write the users whose history changed into the user store",
        formatter_class=_Help,
    )
    sync.add_argument("--data", required=True, help="interactions: file, directory or s3:// URI")
    sync.add_argument(
        "--user-store", help="dynamodb://table or sqlite:///path; default $LMREC_USER_STORE"
    )
    sync.add_argument(
        "--state",
        help="fingerprints of the last sync (default: s3://<data bucket>/histories/"
        "fingerprints.npz, or beside a sqlite store)",
    )
    sync.add_argument(
        "--history-length", type=int, default=None, help="newest items kept per user (1000)"
    )
    sync.add_argument(
        "--erasure",
        help="erasure records root; users pending there are never written (default: "
        "$LMREC_ERASURE_URI, else $LMREC_STORE_URI/erasure, else s3://<data bucket>/erasure)",
    )
    sync.add_argument("--full", action="store_true", help="write every user's history")
    erase = sub.add_parser(
        "erase", help="the deletion job: remove erased users' rows", formatter_class=_Help
    )
    erase.add_argument("--requests", required=True, help="erasure root (s3://bucket/erasure)")
    erase.add_argument("--data", required=True, action="append", help="data URI, repeatable")
    erase.add_argument("--state", default="", help="history-sync fingerprints to clean")
    erase.add_argument(
        "--batch", action="append", default=[], help="batch outputs (user_id rows), repeatable"
    )
    erase.add_argument("--user-store", help="default $LMREC_USER_STORE")
    for p in (sync, erase):
        p.add_argument("--user-col", default="user_id", help="the user id column of the data")


def in_child(args: argparse.Namespace, argv: list[str]) -> int:
    """A training command in its own Python (python -m training); its exit code."""
    return subprocess.run([sys.executable, "-m", "training", *argv], check=False).returncode


def in_place(args: argparse.Namespace, argv: list[str]) -> int:
    """The console script's way: this process becomes python -m training (the same process
    id, so signals reach the job, and its exit code is the command's)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "training", *argv])


def console() -> int:
    """The `lmrec` console script."""
    return main(training=in_place)


def main(argv: list[str] | None = None, training: TrainingRunner | None = None) -> int:
    """Parse and run one subcommand. `training`: how the training commands run (python -m
    training passes training.cli.run_command, in process); by default in a child process."""
    level = os.environ.get("LMREC_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level if level in logging.getLevelNamesMapping() else "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)  # bad arguments end here, before torch loads
    try:
        if args.command in TRAINING_COMMANDS:
            return (training or in_child)(args, argv)
        return int(args.run(args))
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which says more): one line
        print(f"interrupted: lmrec {args.command} stopped", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
