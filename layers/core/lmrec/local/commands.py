"""The operator commands of the `lmrec` script: serve, publish, rollback, demo.

They work on trained models and model stores, never on training, so they import no torch.
`lmrec.local.cli` adds them to its parser beside `train` and `batch`. Each command returns an
exit code: 0, or 2 with one readable line on stderr for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
log = logging.getLogger("lmrec.local")


class CommandError(ValueError):
    """Bad input to a command: reported as one line, exit code 2."""


def store_uri(value: str) -> str:
    """A store given as s3://..., file://... or a plain directory path (made a file:// URI)."""
    if "://" in value:
        return value.rstrip("/")
    return Path(value).expanduser().resolve().as_uri()


def bundle_dir(path: str) -> Path:
    """The bundle inside what `lmrec train --output` or a SageMaker job wrote."""
    root = Path(path).expanduser()
    for candidate in (root, root / "model"):
        if (candidate / "manifest.json").is_file():
            return candidate
    if not root.exists():
        raise CommandError(f"{path}: no such file or directory")
    if (root / "metrics.json").is_file():
        raise CommandError(
            f"{path}: trained with student=false, so it holds no bundle (the teacher alone "
            "is not served); train again without student=false"
        )
    raise CommandError(
        f"{path}: not a trained model (no manifest.json in it or in {path}/model); "
        "train one with `lmrec train --data ... --output DIR`"
    )


def publish(model: str, store: str, model_name: str) -> dict[str, Any]:
    """Copy a verified bundle into the store and make it production (the version it replaces
    joins the rollback chain)."""
    from lmrec import registry

    source = bundle_dir(model)
    pointer = registry.publish(source, store, model_name)
    return registry.set_production(store, model_name, pointer, published_from=str(source.resolve()))


def cmd_publish(args: argparse.Namespace) -> int:
    body = publish(args.model, store_uri(args.store), args.model_name)
    print(json.dumps({"model_version": body["model_version"], "bundle_uri": body["bundle_uri"]}))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from lmrec.promote import rollback

    print(json.dumps(rollback(store_uri(args.store), args.model_name, args.to)))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The same app the Lambda function runs, under uvicorn, over a store or one model."""
    if args.model and args.store:
        raise CommandError("give a model folder or --store, not both")
    listener = listen(args.host, args.port)  # first: a busy port is all a person sees
    # SIGTERM as SystemExit unwinds the `with` below, so the private store's temporary
    # folder goes too (uvicorn re-raises the signal it stopped on, to this handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with listener, tempfile.TemporaryDirectory(prefix="lmrec-serve-") as scratch:
        store = args.store and store_uri(args.store)
        erasure = args.erasure and store_uri(args.erasure)
        if args.model:  # a private store holding just this model, removed on exit
            store = Path(scratch, "store").as_uri()
            publish(args.model, store, args.model_name or "lmrec")
            # not in the private store: erasure requests must outlive this process
            beside = store_uri(f"{Path(args.model).resolve()}-erasure")
            erasure = erasure or os.environ.get("LMREC_ERASURE_URI") or beside
        return _serve(store, erasure, listener, args)


def port_number(text: str) -> int:
    """A TCP port number (argparse type): getaddrinfo would wrap 70000 to 4464."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0..65535)")
    return number


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or one line naming the port and --port."""
    problem = f"cannot listen on {host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, OverflowError) as exc:
        raise CommandError(f"{problem}: {exc}; choose a host with --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # uvicorn's choice too
        sock.bind(address)
        sock.listen()  # connections wait in the backlog until uvicorn accepts them
    except (OSError, OverflowError) as exc:
        sock.close()
        why = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CommandError(f"{problem} ({why}): choose another port with --port N") from None
    return sock


def example_request(url: str, recommender: Any) -> str:
    """A request a person can paste, with two of the served catalog's own item ids (its most
    popular): the README's ids belong to MovieLens, not to the data trained on."""
    ids = recommender.catalog.item_ids
    rows = [int(r) for r in recommender.popularity.argsort()[::-1][:2] if r > 0]
    body = json.dumps({"history": [str(ids[r - 1]) for r in rows], "k": 5})
    return (
        f"try: curl -s {url}/v1/recommendations -H 'content-type: application/json' "
        f"-d {shlex.quote(body)}"
    )


def _settings(store: str | None, erasure: str | None, args: argparse.Namespace):
    from pydantic import ValidationError

    from lmrec.settings import Settings

    given = (
        ("store_uri", store),
        ("model_name", args.model_name),
        ("user_store", args.user_store),
        ("erasure_uri", erasure),
    )
    overrides: dict[str, Any] = {k: v for k, v in given if v}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CommandError(f"{first['loc'][0]}: {first['msg']}") from None


def _serve(
    store: str | None, erasure: str | None, listener: socket.socket, args: argparse.Namespace
) -> int:
    import uvicorn

    from lmrec.api import create_app
    from lmrec.serving import ModelState
    from lmrec.userstore import UserStoreUnavailable

    settings = _settings(store, erasure, args)
    state = ModelState(settings)
    state.refresh()
    try:
        app = create_app(settings, state)
    except UserStoreUnavailable as exc:  # e.g. a sqlite path that cannot be created
        raise CommandError(str(exc)) from None
    bound = listener.getsockname()[1]  # the one bound (--port 0: any free port)
    url = f"http://{f'[{args.host}]' if ':' in args.host else args.host}:{bound}"
    if state.recommender is None:
        print(f"warning: starting without a model: {state.problem}", file=sys.stderr)
    served = f"model {state.version}" if state.version else "no model yet"
    print(f"serving {served} at {url}  (docs {url}/docs; Ctrl-C stops)", flush=True)
    if state.recommender is not None:
        print(example_request(url, state.recommender), flush=True)
    print(_where_users_go(settings), flush=True)
    # keep-alive longer than clients and load balancers idle (uvicorn: 5 s), so a reused
    # connection is not closed under a request in flight
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=75)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _where_users_go(settings: Any) -> str:
    """Where the user store and erasure requests are: a DELETE's record must be findable."""
    users = settings.user_store_uri()
    told = f"user store: {users}" if users else "user store: none (--user-store)"
    root = settings.erasure_root()
    if not root:
        return f"{told}; erasure requests are not recorded"
    return f"{told}; erasure requests (DELETE /v1/users/ID) are recorded in {root}"


def cmd_demo(args: argparse.Namespace) -> int:
    from lmrec.local.demo import main

    return main(args.port, keep_serving=not args.exit)


def _guarded(command):
    """One line and exit code 2 for the errors a person can fix."""

    def run(args: argparse.Namespace) -> int:
        from lmrec.bundle import BundleError
        from lmrec.local.assets import MissingAsset
        from lmrec.registry import PointerError
        from lmrec.store import StoreError

        try:
            return command(args)
        except (CommandError, BundleError, PointerError, StoreError, MissingAsset) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT

    return run


def add_commands(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    for add in (_serve_parser, _publish_parser, _rollback_parser, _demo_parser):
        add(sub, formatter)


def _serve_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the recommendation API on localhost (uvicorn)",
        description="Serve one trained model (a folder from `lmrec train --output`) or the "
        "production model of a store.\n\n  lmrec serve runs/my-model\n"
        "  lmrec serve --store s3://bucket",
        formatter_class=formatter,
    )
    serve.add_argument("model", nargs="?", help="a trained model folder (holds manifest.json)")
    serve.add_argument(
        "--store",
        help="model store: s3://bucket, file:///dir or a directory (default: $LMREC_STORE_URI)",
    )
    serve.add_argument(
        "--model-name", help="model name in the store (default: $LMREC_MODEL_NAME or lmrec)"
    )
    serve.add_argument(
        "--user-store",
        help="users' histories + events: sqlite:///path or dynamodb://table "
        "(default: $LMREC_USER_STORE; fill it with lmrec sync-histories)",
    )
    serve.add_argument(
        "--erasure",
        help="where DELETE /v1/users/ID records erasure requests, for `lmrec erase` "
        "(default: $LMREC_ERASURE_URI, else MODEL-erasure beside a model folder, or "
        "STORE/erasure)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    serve.add_argument(
        "--port", type=port_number, default=8000, help="port to listen on (0: any free one)"
    )
    serve.set_defaults(run=_guarded(cmd_serve))


def _publish_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    publish_p = sub.add_parser(
        "publish",
        help="copy a trained model into a store and make it production",
        formatter_class=formatter,
    )
    publish_p.add_argument("model", help="a trained model folder (holds manifest.json)")
    publish_p.add_argument("--store", required=True, help="s3://bucket, file:///dir or a directory")
    publish_p.add_argument("--model-name", default="lmrec", help="model name in the store")
    publish_p.set_defaults(run=_guarded(cmd_publish))


def _rollback_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    rollback = sub.add_parser(
        "rollback", help="point production back at the previous model", formatter_class=formatter
    )
    rollback.add_argument("--store", required=True, help="s3://bucket, file:///dir or a directory")
    rollback.add_argument("--model-name", default="lmrec", help="model name in the store")
    rollback.add_argument(
        "--to",
        metavar="VERSION",
        help="the version to serve (default: the one production replaced); idempotent",
    )
    rollback.set_defaults(run=_guarded(cmd_rollback))


def _demo_parser(sub: Any, formatter: type[argparse.HelpFormatter]) -> None:
    demo = sub.add_parser(
        "demo", help="the whole lifecycle on the embedded local stack", formatter_class=formatter
    )
    demo.add_argument("--port", type=port_number, default=8000, help="API port (another if taken)")
    demo.add_argument("--exit", action="store_true", help="stop after the demo instead of serving")
    demo.set_defaults(run=_guarded(cmd_demo))
