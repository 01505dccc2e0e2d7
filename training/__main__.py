"""python -m training: the SageMaker container's entry, and where `lmrec train|batch|
sync-histories|erase` run (lmrec.local.cli parses, training.cli does the work)."""

import argparse
import sys

from lmrec.local.cli import main


def run_command(args: argparse.Namespace, argv: list[str]) -> int:
    from training.cli import run_command as run  # torch: only for the training commands

    return run(args, argv)


sys.exit(main(training=run_command))
