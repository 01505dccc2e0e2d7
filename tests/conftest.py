"""Shared fixtures: small real and synthetic interaction files, and a moto S3 server."""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from lmrec.local.stack import (
    LambdaContext,
    create_user_store_table,
    free_port,
)

REPO = Path(__file__).resolve().parents[1]
ML100K = REPO / "training" / "sample_data" / "ml-100k"

# Small, fast models for tests: the contract is under test here, not the quality.
TINY_HP = {
    "epochs": "2",
    "d_model": "16",
    "n_heads": "2",
    "n_blocks": "1",
    "max_len": "20",
    "batch_size": "64",
    "progress": "false",
    "num_threads": "1",
    "student_d_model": "8",
    "student_max_len": "10",
    "student_epochs": "2",
}


# Enough training for the synthetic +1 walk: the student then clearly beats popularity.
LEARNABLE_HP = {
    **TINY_HP,
    "epochs": "6",
    "d_model": "32",
    "lr": "0.005",
    "student_epochs": "6",
    "student_d_model": "16",
    "student_lr": "0.005",
    "student_plain": "false",
}


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def synthetic_rows(
    n_users: int = 120,
    n_items: int = 60,
    length: int = 15,
    seed: int = 0,
    first_user: int = 0,
    p_step: float = 0.9,
):
    """Users walk the catalog in steps of +1 (with probability p_step, else a random jump): a
    sequential pattern a model can learn and popularity cannot. Item ids are strings like
    "i7"; user ids "u3"."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(first_user, first_user + n_users):
        item = int(rng.integers(n_items))
        seen = set()
        t = 1_600_000_000 + u
        for _ in range(length):
            while item in seen:
                item = (item + 1) % n_items
            seen.add(item)
            rows.append([f"u{u}", f"i{item}", t])
            t += 60
            item = (item + 1) % n_items if rng.random() < p_step else int(rng.integers(n_items))
    return rows


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "train" / "interactions.csv",
        ["user_id", "item_id", "timestamp"],
        synthetic_rows(),
    )


@pytest.fixture(scope="session")
def ml100k_small(tmp_path_factory) -> tuple[Path, Path]:
    """The first 80 users of the shipped MovieLens 100K sample (about 8k ratings)."""
    out = tmp_path_factory.mktemp("ml100k")
    with gzip.open(ML100K / "interactions.csv.gz", "rt") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    keep = {str(u) for u in range(1, 81)}
    body = [r for r in body if r[0] in keep]
    inter = write_csv(out / "train" / "interactions.csv", header, body)
    with gzip.open(ML100K / "items.csv.gz", "rt") as fh:
        items = list(csv.reader(fh))
    catalog = write_csv(out / "items" / "items.csv", items[0], items[1:])
    return inter, catalog


@pytest.fixture(scope="session")
def moto_server():
    """A real S3 endpoint on localhost (moto server), reached through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """Point boto3 (ours and the test's) at the moto server with dummy credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import lmrec.aws

    monkeypatch.setattr(lmrec.aws, "_clients", {})  # fresh clients see the endpoint
    # ... with the library's budget: a function imported by an earlier test configured its
    # own (the API's: 1 s reads, 2 attempts), and on a loaded machine one 100-action
    # transaction on the moto server outlasted it in a user-store test (a test that imports
    # a function gets that function's budget again at import).
    monkeypatch.setattr(lmrec.aws, "_budget", lmrec.aws.Budget())
    return moto_server


def run_training(args: list[str], env: dict | None = None, timeout: int = 300, **kw):
    """`python -m training ...` in a subprocess, as SageMaker would run it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def train_bundle(data_args: list[str], out: Path, hp: dict) -> Path:
    """Run the training entry with these hyperparameters; the model directory is the bundle."""
    args = ["train", *data_args, "--output", str(out)]
    for key, value in hp.items():
        args += ["--set", f"{key}={value}"]
    proc = run_training(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory, ml100k_small) -> Path:
    """A real bundle: the training entry run on 80 MovieLens users with tiny models."""
    inter, items = ml100k_small
    out = tmp_path_factory.mktemp("bundle") / "model"
    hp = {**TINY_HP, "epochs": "3", "student_epochs": "3", "student_d_model": "16"}
    return train_bundle(["--data", str(inter), "--items", str(items)], out, hp)


def fill_user_store(store_uri: str, data: Path, state_dir: Path) -> dict:
    """Write every user's history of `data` into a user store, as the training job does."""
    import uuid

    from lmrec.userstore import open_user_store

    from training import histories
    from training.config import DataConfig
    from training.data import load_interactions

    state = f"file://{state_dir / f'fingerprints-{uuid.uuid4().hex[:8]}.npz'}"
    loaded = load_interactions(str(data), DataConfig())
    return histories.sync(loaded, open_user_store(store_uri), state)


EVENTS_DIR = REPO / "events"


@contextmanager
def running(stack) -> Iterator:
    """A started local stack; afterwards stopped, with the environment it exported undone."""
    import boto3
    from lmrec.settings import get_settings

    saved = dict(os.environ)  # the stack exports its endpoint like a shell would
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        boto3.setup_default_session()
        get_settings.cache_clear()


def load_event(name: str) -> dict:
    import json

    return json.loads((EVENTS_DIR / name).read_text())


def import_function(name: str, module_name: str | None = None):
    """Import functions/<name>/app.py as a fresh module, as the Lambda runtime would."""
    import importlib.util

    from tests import aws_calls

    role = aws_calls.FUNCTIONS[name]  # its AWS calls are judged against this role's policy
    path = REPO / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(module_name or f"fn_{name}_app", path)
    module = importlib.util.module_from_spec(spec)
    with aws_calls.acting_as(role):
        spec.loader.exec_module(module)
    module.handler = aws_calls.acting(role, module.handler)
    state = getattr(module, "state", None)
    if state is not None and hasattr(state, "refresh"):  # tests refresh the API's model too
        state.refresh = aws_calls.acting(role, state.refresh)
    return module


def load_template() -> dict:
    """template.yaml with CloudFormation short tags (!Ref, !Sub, ...) kept as {tag: value}."""
    import yaml

    class CfnLoader(yaml.SafeLoader):
        pass

    def tagged(loader, tag_suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {f"!{tag_suffix}": value}

    CfnLoader.add_multi_constructor("!", tagged)
    return yaml.load((REPO / "template.yaml").read_text(), Loader=CfnLoader)


def sam_invoke(logical_id: str, event: dict, env: dict, monkeypatch):
    """What `sam local invoke <logical_id> -e <event>` does, minus the container: resolve the
    function's CodeUri and Handler from template.yaml, import it fresh, call it."""
    import importlib.util

    props = load_template()["Resources"][logical_id]["Properties"]
    module_name, func_name = props["Handler"].rsplit(".", 1)
    path = REPO / props["CodeUri"] / f"{module_name}.py"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"sam_{logical_id}", path)
    module = importlib.util.module_from_spec(spec)
    from tests.aws_calls import acting_as

    with acting_as(logical_id):  # its AWS calls are judged against this function's role
        spec.loader.exec_module(module)
        return getattr(module, func_name)(event, LambdaContext())


def pytest_terminal_summary(terminalreporter):
    """After a run that judged AWS calls: the role permissions no call needed (candidates to
    remove from template.yaml, unless the platform, not our code, uses them)."""
    from tests import aws_calls

    if aws_calls.USED:
        terminalreporter.write_sep("-", "IAM permissions no judged call used")
        for line in aws_calls.unused_permissions():
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def aws_calls_allowed_by_template(monkeypatch, tmp_path_factory):
    """Every AWS call a function (or the training job) makes in a test must be allowed by
    its role in template.yaml (tests/aws_calls.py); the test errors with what to add."""
    from lmrec.local.stack import LocalStack

    from tests import aws_calls

    aws_calls.install(monkeypatch)
    for method, principal in (
        ("retrain", "RetrainFunction"),
        ("promote", "PromoteFunction"),
        ("run_job", aws_calls.TRAINING),  # SageMaker reads inputs, writes outputs as the role
    ):
        wrapped = aws_calls.acting(principal, getattr(LocalStack, method), method == "run_job")
        monkeypatch.setattr(LocalStack, method, wrapped)
    # child processes (the training container) record into a file, as SageMakerRole
    child_log = tmp_path_factory.mktemp("aws-calls") / "child.jsonl"
    monkeypatch.setenv(aws_calls.CHILD_FILE_ENV, str(child_log))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(aws_calls.CHILD_DIR), path]))
    )
    monkeypatch.setenv(aws_calls.CHILD_PRINCIPAL_ENV, "")
    with aws_calls.recording() as calls:
        yield calls
    calls += aws_calls.child_calls(child_log)
    _, failures = aws_calls.judge(calls)
    if failures:
        pytest.fail(
            "template.yaml does not allow what the code calls:\n\n" + "\n\n".join(failures),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def learned_bundle(tmp_path_factory) -> Path:
    """A bundle whose student clearly beats popularity: trained on the synthetic +1 walk."""
    tmp = tmp_path_factory.mktemp("learned")
    src = write_csv(
        tmp / "seq.csv",
        ["user_id", "item_id", "timestamp"],
        synthetic_rows(n_users=200, n_items=80, length=15),
    )
    out = tmp / "model"
    return train_bundle(["--data", str(src)], out, LEARNABLE_HP)


# --- the API through its Lambda handler (shared by the API test modules) --------------------


def call(fn, event_name: str, body=None, raw_body: str | None = None, path=None, query=None):
    import json

    event = load_event(event_name)
    if body is not None:
        event["body"] = json.dumps(body)
    if raw_body is not None:
        event["body"] = raw_body
    if path is not None:
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
    if query is not None:
        event["rawQueryString"] = query
    reply = fn.handler(event, LambdaContext())
    return reply["statusCode"], json.loads(reply["body"]) if reply.get("body") else None


@pytest.fixture(params=["sqlite", "dynamodb"])
def user_store(request, tmp_path):
    """A user store of each kind: SQLite (lmrec serve), DynamoDB (moto)."""
    import uuid

    from lmrec.userstore import open_user_store

    if request.param == "sqlite":
        return open_user_store(f"sqlite://{tmp_path / 'users.db'}")
    request.getfixturevalue("s3_env")
    table = f"users-{uuid.uuid4().hex[:8]}"
    create_user_store_table(table)
    return open_user_store(f"dynamodb://{table}")


@pytest.fixture
def model_store(tmp_path, trained_bundle):
    from lmrec import registry

    root = f"file://{tmp_path / 'store'}"
    pointer = registry.publish(trained_bundle, root, "lmrec")
    registry.set_production(root, "lmrec", pointer)
    return root


@pytest.fixture
def api(monkeypatch, s3_env, model_store, ml100k_small, tmp_path):
    import uuid

    from lmrec.settings import get_settings

    table = f"users-{uuid.uuid4().hex[:8]}"
    create_user_store_table(table)
    fill_user_store(f"dynamodb://{table}", ml100k_small[0], tmp_path)  # the users' histories
    monkeypatch.setenv("LMREC_STORE_URI", model_store)
    monkeypatch.setenv("LMREC_USER_STORE", f"dynamodb://{table}")
    monkeypatch.setenv("LMREC_REFRESH_SECONDS", "1")
    get_settings.cache_clear()
    yield import_function("api")
    get_settings.cache_clear()


def lmrec_cli(argv: list[str]) -> int:
    """`lmrec ARGS` in this process (the console script would hand the training commands
    to python -m training): tests can patch what the commands call."""
    from lmrec.local.cli import main

    from training.cli import run_command

    return main(argv, training=run_command)
