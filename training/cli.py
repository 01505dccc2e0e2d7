"""The work behind `lmrec train | batch | sync-histories | erase` (the parser and dispatch
live in lmrec.local.cli, the `lmrec` command; `python -m training` runs the same main).

Each function takes the parsed arguments and returns an exit code; torch is imported only
when one runs. With no --data, `train` follows the SageMaker container contract under
$SAGEMAKER_BASE_DIR (default /opt/ml). Bad input ends with exit code 2 and one readable line;
in a container the reason also goes to output/failure (a local run writes a failure file
only when --failure-file names one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from lmrec.local.cli import EXIT_INTERRUPTED

from training.sagemaker import torchrun_worker

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_STOPPED = 143  # 128 + SIGTERM, as a shell would report it

log = logging.getLogger("lmrec.train")


def _user_store(uri: str | None):
    from lmrec.userstore import open_user_store

    uri = uri or os.environ.get("LMREC_USER_STORE", "")
    return open_user_store(uri) if uri else None


def default_state_uri(data_uri: str, store_uri: str) -> str:
    from lmrec.store import parse

    if store_uri.startswith("sqlite://"):
        return f"file://{store_uri.removeprefix('sqlite://')}.fingerprints.npz"
    loc = parse(data_uri)
    if loc.scheme == "s3":
        return f"s3://{loc.bucket}/histories/fingerprints.npz"
    raise ValueError("--state is needed (the data is not in S3)")


def sync_histories(args) -> int:
    import json

    from lmrec.store import StoreError
    from lmrec.userstore import UserStoreError, UserStoreUnavailable

    from training import histories, userdata
    from training.config import DataConfig
    from training.data import DataError, load_interactions

    length = (
        histories.DEFAULT_HISTORY_LENGTH if args.history_length is None else args.history_length
    )
    try:
        if not 1 <= length <= 100_000:
            raise ValueError("--history-length must be in 1..100000")
        if args.erasure:  # given by hand: a mistyped local root would skip no one
            from training.erasure import must_exist

            must_exist(args.erasure, "--erasure", "create it if no request was ever recorded")
        user_store = _user_store(args.user_store)
        if user_store is None:
            raise ValueError("no user store: pass --user-store or set LMREC_USER_STORE")
        state = args.state or default_state_uri(args.data, user_store.uri)
        # every user's history, however little data there is (no training floor here)
        cfg = DataConfig(user_col=args.user_col, min_interactions=0, min_users=0)
        # the training job's rule, not only the flag: a sync by hand must not write back
        # a user who asked to be erased
        erasure = args.erasure or userdata.erasure_root(os.environ, args.data)
        if not erasure:
            print(
                "warning: no erasure location (--erasure, LMREC_ERASURE_URI or "
                "LMREC_STORE_URI): users with a pending erasure cannot be skipped",
                file=sys.stderr,
            )
        data = load_interactions(args.data, cfg)
        summary = histories.sync(data, user_store, state, length, erasure, full=args.full)
        summary["erasure"] = erasure or None
    except (DataError, StoreError, UserStoreError, UserStoreUnavailable, ValueError) as exc:
        print(f"error: {str(exc)[:500]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(summary))
    return 0


def erase_command(args) -> int:
    import json

    from lmrec.store import StoreError
    from lmrec.userstore import UserStoreError, UserStoreUnavailable

    from training import erasure
    from training.data import DataError

    try:
        erasure.must_exist(args.requests, "--requests", parent_enough=True)
        if args.state:  # a mistyped folder would leave the erased users' fingerprints
            erasure.must_exist(args.state, "--state", "the requests stay pending", True)
        summary = erasure.run(
            args.requests,
            args.data,
            args.user_col,
            args.state,
            _user_store(args.user_store),
            batch_uris=args.batch,
        )
    except (DataError, StoreError, UserStoreError, UserStoreUnavailable, ValueError) as exc:
        print(f"error: {str(exc)[:500]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(summary))
    return 0


def batch(args) -> int:
    import json

    from lmrec.bundle import BundleError
    from lmrec.store import StoreError

    from training.batch import run_batch, shard_from_resource_config
    from training.data import DataError

    if not 1 <= args.k <= 1000:
        print("error: --k must be in 1..1000", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        index, count = shard_from_resource_config()
        index = args.shard_index if args.shard_index is not None else index
        count = args.shard_count if args.shard_count is not None else count
        summary = run_batch(
            args.bundle, args.output, args.users, args.k, index, count, data_uri=args.data
        )
    except (BundleError, StoreError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(summary))
    return 0


def _paths(args):
    """Where the job reads and writes: the SageMaker contract, or --data/--output."""
    from training.config import ConfigError
    from training.sagemaker import Paths, base_dir, container_paths

    if args.data is None:
        if args.output or args.items:
            raise ConfigError(
                "--output/--items need --data (without --data, train runs the "
                "SageMaker contract under $SAGEMAKER_BASE_DIR)"
            )
        # Not in a container (no base dir at all): a person ran bare `lmrec train`.
        if not base_dir().exists():
            raise ConfigError(
                f"no --data given and no SageMaker container here ({base_dir()}): run "
                "`lmrec train --data FILE|DIR|s3://... --output DIR` (see lmrec train --help)"
            )
        return container_paths()
    if not args.output:
        raise ConfigError("--data needs --output DIR")
    output = Path(args.output).resolve()
    checkpoints = (
        Path(args.checkpoints).resolve()
        if args.checkpoints
        else output.parent / (output.name + "-checkpoints")
    )
    if not torchrun_worker():  # once, in the launcher: not in every torchrun worker
        _check_output(output, checkpoints, {"--data": args.data, "--items": args.items})
    return Paths(
        train=args.data,
        items=args.items,
        model_dir=output,
        checkpoints=checkpoints,
        failure=Path(args.failure_file).resolve() if args.failure_file else None,
    )


def _check_output(output: Path, checkpoints: Path, inputs: dict[str, str | None]) -> None:
    """Refuse, before any work, an --output the job must not replace or cannot write: its
    files are replaced by the new run's, so it must be new, empty or an earlier job's
    output (metrics.json), and hold no input nor lie inside one."""
    from lmrec.store import StoreError, parse

    from training.config import ConfigError
    from training.model_swap import LOCK, InUse, hold, is_own, recover

    for flag, path in (("--output", output), ("--checkpoints", checkpoints)):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{flag} {path} is a file, not a directory")
        _can_create(flag, path)
    for flag, given in inputs.items():
        try:
            loc = parse(given) if given else None
        except StoreError:  # an unsupported scheme: the data loader says so
            continue
        if loc is None or loc.scheme != "file":
            continue
        data = Path(loc.key)
        if data == output or output in data.parents or data in output.parents:
            raise ConfigError(
                f"--output {output} and {flag} {data} overlap: the output would replace the "
                "input or be read as input next time; give an output outside the data"
            )
    try:
        hold(output)  # before recover: another job's swap in progress is not a killed one's
    except InUse as exc:
        raise ConfigError(f"--output {exc}; wait for it, or give another --output") from None
    recover(output)  # a killed run's swap undone first: its files are ours, not foreign
    theirs = [c for c in output.iterdir() if not is_own(c)]
    if theirs and not (output / "metrics.json").is_file():
        (output / LOCK).unlink(missing_ok=True)  # their folder left as it was
        raise ConfigError(
            f"--output {output} holds files that are not an lmrec job's output (no "
            "metrics.json); a job replaces what its output directory holds: give a new or "
            "empty directory"
        )


def _can_create(flag: str, path: Path) -> None:
    """ConfigError unless `path` is a writable directory or can be made one: made and
    removed again, so a refusal later leaves nothing behind (os.access alone says yes for
    /proc as root, where mkdir fails)."""
    from training.config import ConfigError

    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".lmrec-write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{flag} {path} cannot be written: {exc.strerror}") from None
    finally:
        for p in missing:  # deepest first; another process may be at the same folders
            with contextlib.suppress(OSError):
                p.rmdir()


def _hyperparameters(args, paths) -> dict[str, str]:
    """The container's hyperparameters.json or --hyperparameters, then --quick and --set."""
    from training.config import QUICK_SECONDS, ConfigError, key_value, load_hyperparameters

    if args.data is None:
        hp = load_hyperparameters(paths.hyperparameters)
    elif args.hyperparameters:
        hp = load_hyperparameters(args.hyperparameters, required=True)
    else:
        hp = {}
    if args.quick:
        hp["max_total_seconds"] = str(QUICK_SECONDS)
    for item in args.overrides:
        key, value = key_value(item)
        if args.quick and key == "max_total_seconds":
            raise ConfigError("--quick sets max_total_seconds: give one or the other")
        hp[key] = value
    # Progress bars are for people: on by default only when stderr is a terminal, so
    # SageMaker/CloudWatch logs and redirected output get the one-line-per-epoch records only.
    hp.setdefault("progress", "true" if sys.stderr.isatty() else "false")
    return hp


def _launch(cmd: list[str]) -> int:
    """Run torchrun as a child; pass SIGTERM on so workers checkpoint and stop."""
    log.info("launching %s", " ".join(cmd))
    child = subprocess.Popen(cmd)
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    try:
        return child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached torchrun too (one process group): let its
        child.wait()  # workers stop and the launcher report, then one line here
        return EXIT_INTERRUPTED


def train(args, argv: list[str]) -> int:
    from training.model_swap import release

    try:
        prepared = _prepare(args, argv)
        if isinstance(prepared, int):
            return prepared  # bad input, already reported
        paths, cfg, cmd = prepared
        if cmd is not None:
            return _run_launched(cmd, paths, cfg)
        return _run_here(paths, cfg)
    finally:
        release()  # the output's lock (a refused run leaves no folder behind)


def _prepare(args, argv: list[str]):
    """(paths, config, torchrun command or None), or the exit code of a failure."""
    from lmrec.store import StoreError

    from training.config import ConfigError, from_hyperparameters

    paths = None
    try:
        # paths first: a bad hyperparameters file or --set pair is then reported in the
        # failure file too (SageMaker's output/failure, or --failure-file)
        paths = _paths(args)
        cfg = from_hyperparameters(_hyperparameters(args, paths))
    except (ConfigError, ValueError) as exc:  # before pandas and torch load: a quick refusal
        return _fail(paths, exc, EXIT_BAD_INPUT)
    from training import userdata
    from training.data import DataError
    from training.sagemaker import launch_command, read_resource_config

    try:
        if args.fresh and not torchrun_worker():  # once, before torchrun's workers
            _start_over(paths.checkpoints)
        userdata.before_training(paths.train, cfg.data.user_col)  # erasure: before any model
        cmd = launch_command(
            read_resource_config(paths.resource_config), cfg.train.processes_per_host, argv
        )
    except (ConfigError, DataError, StoreError) as exc:
        return _fail(paths, exc, EXIT_BAD_INPUT)
    except ValueError as exc:  # resourceconfig problems
        return _fail(paths, exc, EXIT_BAD_INPUT)
    except RuntimeError as exc:  # the deletion job could not finish: train on nothing
        log.exception("the erasure step failed")
        return _fail(paths, exc, EXIT_INTERNAL)
    return paths, cfg, cmd


def _start_over(root: Path | None) -> None:
    """--fresh: remove the phase checkpoints an earlier run left (only folders holding one:
    a --checkpoints folder may hold other things)."""
    import shutil

    from training.checkpoint import STATE

    if root is None or not root.is_dir():
        return
    phases = [d for d in root.iterdir() if d.is_dir() and (d / STATE).exists()]
    for phase in phases:
        shutil.rmtree(phase)
    if phases:
        print(f"--fresh: removed {len(phases)} checkpoints in {root}", file=sys.stderr)
    if not any(root.iterdir()):
        root.rmdir()


def _run_launched(cmd: list[str], paths, cfg) -> int:
    """More than one process: torchrun runs this entry again in each."""
    from training import userdata
    from training.sagemaker import write_failure

    code = _launch(cmd)
    if code != 0 and paths.failure is not None and not paths.failure.exists():
        write_failure(paths, f"a training process exited with status {code}; see the logs")
    if code == 0:
        userdata.after_training(paths.train, cfg.data)
    return code


def _run_here(paths, cfg) -> int:
    from lmrec.store import StoreError

    from training import dist, pipeline, userdata
    from training.config import ConfigError
    from training.data import DataError
    from training.trainer import Stopped

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    env = dist.setup()
    try:
        document = pipeline.run(paths, cfg, env, stop)
        if env.is_main:
            if document is not None and "model_version" not in document:
                print(NO_BUNDLE.format(paths.model_dir), file=sys.stderr, flush=True)
            userdata.after_training(paths.train, cfg.data)
        return 0
    except Stopped as exc:
        log.warning("SIGTERM: %s; the last finished epoch is in %s", exc, paths.checkpoints)
        return EXIT_STOPPED
    except KeyboardInterrupt:  # Ctrl-C: one line, as SIGTERM gets; the model dir stays whole
        print(
            f"interrupted: the last finished epoch of each phase is in {paths.checkpoints} "
            "(the same command resumes from there)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_INTERRUPTED
    except (ConfigError, DataError, StoreError) as exc:
        return _fail(paths if env.is_main else None, exc, EXIT_BAD_INPUT)
    except Exception as exc:  # an internal error: keep the traceback for the logs
        log.exception("training failed")
        return _fail(paths if env.is_main else None, exc, EXIT_INTERNAL)
    finally:
        dist.teardown(env)


NO_BUNDLE = (
    "no bundle written: student=false trains the teacher alone (student_plain comes only "
    "beside the distilled student); {} holds its weights and report, which `lmrec serve` "
    "cannot load"
)


def _fail(paths, exc: BaseException, code: int) -> int:
    from lmrec.redact import truncate

    from training.sagemaker import write_failure

    kind = "bad input" if code == EXIT_BAD_INPUT else f"internal error ({type(exc).__name__})"
    text = truncate(str(exc), 2000)  # a message quoting a huge input line stays readable
    reason = f"lmrec training failed, {kind}: {text}"
    unwritten = ""
    if paths is not None:
        try:
            write_failure(paths, reason)
        except OSError as err:  # e.g. --failure-file in a folder one cannot write
            unwritten = f" (and the failure file could not be written: {err.strerror})"
    print(f"error: {text}{unwritten}", file=sys.stderr, flush=True)
    return code


def run_command(args, argv: list[str]) -> int:
    """One of lmrec.local.cli.TRAINING_COMMANDS, parsed there."""
    if args.command == "train":
        return train(args, argv)
    if args.command == "batch":
        return batch(args)
    if args.command == "sync-histories":
        return int(sync_histories(args))
    return int(erase_command(args))
