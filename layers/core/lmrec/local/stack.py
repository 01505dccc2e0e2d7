"""The embedded local stack: everything lmrec needs from AWS, on this machine.

- a moto server on 127.0.0.1 plays S3, DynamoDB and the SageMaker API; our code reaches it
  through AWS_ENDPOINT_URL, the same boto3 code paths as in AWS;
- a local runner plays SageMaker: for each training job the retrain function created, it
  lays out a SAGEMAKER_BASE_DIR exactly as SageMaker would, runs the real entry
  (`python -m training train`), tars <base>/model to <output>/<job>/output/model.tar.gz and
  hands the "Training Job State Change" event to the promote function;
- the Lambda handlers are imported from functions/<name>/app.py and called with the events
  their EventBridge rules would deliver (moto's EventBridge does not invoke Lambda targets);
  both are found through lmrec.local.assets, in a checkout or an installed wheel alike.

Nothing here ships in the Lambda code: layers/build.py leaves the lmrec.local package out of
the core layer. It needs the dev extra (moto).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3

from lmrec import aws, itemstore, store
from lmrec.local import assets

# What the stack itself reads (the retrain event is the caller's): checked by start().
FUNCTIONS = ("retrain", "promote")
COMPLETED, FAILED = "promote_training_completed.json", "promote_training_failed.json"
log = logging.getLogger(__name__)


class LambdaContext:
    function_name = "lmrec-local"
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:lmrec-local"
    aws_request_id = "local"
    log_group_name = "/aws/lambda/lmrec-local"
    log_stream_name = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_user_store_table(name: str) -> None:
    """The user-store table (histories and events) as template.yaml declares it."""
    aws.create_keyed_table(name, "user_id", "sk")


def training_home() -> Path:
    """The folder above the `training` package this process imports. The jobs run there:
    `python -m training` puts its working directory first on sys.path, so it imports the same
    package, the checkout's or the installed one, from whatever folder the caller is in."""
    spec = importlib.util.find_spec("training")
    if spec is None or spec.origin is None:
        raise assets.MissingAsset("the training package is missing from this lmrec installation")
    return Path(spec.origin).resolve().parents[1]


def load_function(name: str):
    path = assets.function_code(name)
    spec = importlib.util.spec_from_file_location(f"local_{name}_{time.monotonic_ns()}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event_from_file(name: str, **detail) -> dict:
    event = json.loads(assets.event_file(name).read_text())
    event.setdefault("detail", {}).update(detail)
    return event


@dataclass
class LocalStack:
    workdir: Path
    bucket: str = "lmrec-local"
    table: str = "lmrec-user-store"
    item_table: str = "lmrec-item-store"
    model_name: str = "lmrec"
    hyperparameters: dict = field(default_factory=dict)
    min_new_interactions: int = 1000
    port: int = 0
    # Send the functions' log records (Powertools JSON on stdout) to logs/functions.log
    # instead of this process's stdout, as CloudWatch would keep them apart from a console.
    quiet_functions: bool = False
    _server: Any = None  # moto's ThreadedMotoServer, once started
    _ran: set = field(default_factory=set)
    _function_log: TextIO | None = None

    @property
    def log_dir(self) -> Path:
        """Where each training job's output (<job>.log) and the functions' logs go."""
        return self.workdir / "logs"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_uri(self) -> str:
        return f"s3://{self.bucket}"

    def env(self) -> dict[str, str]:
        """What the deployed functions get from template.yaml, pointed at the local stack."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LMREC_STORE_URI": self.store_uri,
            "LMREC_MODEL_NAME": self.model_name,
            # one table for histories and events (moto's DynamoDB), as in AWS
            "LMREC_USER_STORE": f"dynamodb://{self.table}",
            "LMREC_ITEM_STORE": f"dynamodb://{self.item_table}",  # items added after models
            "LMREC_ERASURE_URI": f"{self.store_uri}/erasure",
            "LMREC_BATCH_URI": f"{self.store_uri}/batch/",
            "LMREC_JOB_PREFIX": "lmrec-",
            "LMREC_DATA_URI": f"{self.store_uri}/data/interactions/",
            "LMREC_ITEMS_URI": f"{self.store_uri}/data/items/",
            "LMREC_OUTPUT_URI": f"{self.store_uri}/training-output",
            "LMREC_TRAINING_IMAGE": "lmrec-train:local",
            "LMREC_TRAINING_ROLE_ARN": "arn:aws:iam::123456789012:role/lmrec-sagemaker-local",
            "LMREC_MIN_NEW_INTERACTIONS": str(self.min_new_interactions),
            "LMREC_HYPERPARAMETERS": json.dumps(self.hyperparameters),
            "LMREC_GATE_TOLERANCE": "0.0",
            "LMREC_CACHE_DIR": str(self.workdir / "cache"),
            "POWERTOOLS_METRICS_NAMESPACE": "lmrec-local",
        }

    def start(self) -> LocalStack:
        from moto.server import ThreadedMotoServer

        for name in FUNCTIONS:  # a broken installation fails here, before a job has run
            assets.function_code(name)
        for name in (COMPLETED, FAILED):
            assets.event_file(name)
        training_home()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # moto keeps its state per process, not per server: a second stack in one process
        # (the test suite) would find the first one's table, bucket objects and jobs.
        reset = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10).close()
        os.environ.update(self.env())
        boto3.setup_default_session()  # a default session that sees this environment
        aws.reset_clients()  # and clients for this endpoint
        aws.client("s3").create_bucket(Bucket=self.bucket)
        create_user_store_table(self.table)
        itemstore.create_table(self.item_table)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._function_log is not None:
            logging.shutdown()  # flush the handlers that write to it
            self._function_log.close()
            self._function_log = None

    def upload(self, local: Path, key: str) -> str:
        uri = f"{self.store_uri}/{key}"
        store.write_bytes(uri, Path(local).read_bytes())
        return uri

    # -- the functions, invoked with what their EventBridge rules deliver --------------------
    def retrain(self, event_name: str = "retrain_schedule.json") -> dict:
        return self._invoke("retrain", event_from_file(event_name))

    def promote(self, event: dict) -> dict:
        return self._invoke("promote", event)

    def _invoke(self, function: str, event: dict) -> dict:
        os.environ.update(self.env())
        if not self.quiet_functions:
            return load_function(function).handler(event, LambdaContext())
        if self._function_log is None:  # open while the stack runs: Powertools keeps using it
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._function_log = open(self.log_dir / "functions.log", "a")  # noqa: SIM115
        # Powertools binds its handler to sys.stdout when the module is loaded: load it here.
        with contextlib.redirect_stdout(self._function_log):
            return load_function(function).handler(event, LambdaContext())

    # -- the SageMaker stand-in --------------------------------------------------------------
    def run_pending_jobs(self, on_line: Callable[[str], None] | None = None) -> list[dict]:
        """Run every training job not run yet; return the promote function's decisions.
        `on_line` sees each line the job prints (its log file gets all of them)."""
        sm = aws.client("sagemaker")
        decisions = []
        for summary in sm.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]:
            name = summary["TrainingJobName"]
            if name in self._ran:
                continue
            self._ran.add(name)
            decisions.append(self.run_job(sm.describe_training_job(TrainingJobName=name), on_line))
        return decisions

    def job_dir(self, job_name: str) -> Path:
        """The job's SAGEMAKER_BASE_DIR; its bundle is model/ under it."""
        return self.workdir / "sagemaker" / job_name

    def run_job(self, job: dict, on_line: Callable[[str], None] | None = None) -> dict:
        name = job["TrainingJobName"]
        base = self._lay_out(job)
        began = time.perf_counter()
        # the image's entry point with the job's arguments (the deletion job: `erase ...`)
        args = job["AlgorithmSpecification"].get("ContainerArguments") or ["train"]
        code = self._run_container(name, base, on_line, args)
        log.info("training job %s exited %d after %.0f s", name, code, time.perf_counter() - began)
        return self.promote(self._state_change(job, base, code))

    def _lay_out(self, job: dict) -> Path:
        """<base>/input as SageMaker lays it out: config files and the channels' data."""
        base = self.job_dir(job["TrainingJobName"])
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(job.get("HyperParameters", {})))
        (config / "resourceconfig.json").write_text(
            json.dumps(
                {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "lo"}
            )
        )
        (base / "model").mkdir(exist_ok=True)  # SageMaker uploads it even when empty
        for channel in job.get("InputDataConfig") or []:  # a deletion job has none
            prefix = channel["DataSource"]["S3DataSource"]["S3Uri"]
            dest = base / "input" / "data" / channel["ChannelName"]
            dest.mkdir(parents=True, exist_ok=True)
            for obj in store.list_objects(prefix):
                store.download(obj.uri, dest / obj.uri[len(prefix.rstrip("/")) + 1 :])
        return base

    def _run_container(
        self,
        name: str,
        base: Path,
        on_line: Callable[[str], None] | None,
        args: list[str] | None = None,
    ) -> int:
        """`python -m training train` (or the job's ContainerArguments) with the job's base
        dir; its output (stdout and stderr, as CloudWatch would keep it) goes to
        logs/<job>.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (
            open(self.log_dir / f"{name}.log", "w") as out,
            subprocess.Popen(
                [sys.executable, "-m", "training", *(args or ["train"])],
                cwd=training_home(),
                env={
                    **os.environ,
                    "SAGEMAKER_BASE_DIR": str(base.resolve()),
                    "PYTHONUNBUFFERED": "1",
                },
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as proc,
        ):
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                if on_line is not None:
                    on_line(line)
            return proc.wait()

    def _state_change(self, job: dict, base: Path, code: int) -> dict:
        """Upload model.tar.gz (on success) and build the event SageMaker would send."""
        name = job["TrainingJobName"]
        artifact = (
            f"{job['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
        )
        detail = {"TrainingJobName": name, "ModelArtifacts": {"S3ModelArtifacts": artifact}}
        if code == 0:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for path in sorted((base / "model").iterdir()):
                    tar.add(path, arcname=path.name)
            store.write_bytes(artifact, buf.getvalue())
            detail.update(TrainingJobStatus="Completed", SecondaryStatus="Completed")
            event = event_from_file(COMPLETED, **detail)
        else:
            failure = base / "output" / "failure"
            reason = failure.read_text().strip() if failure.exists() else f"exit {code}"
            detail.update(
                TrainingJobStatus="Failed",
                SecondaryStatus="Failed",
                FailureReason=f"AlgorithmError: {reason}",
            )
            event = event_from_file(FAILED, **detail)
        event["resources"] = [job["TrainingJobArn"]]
        return event
