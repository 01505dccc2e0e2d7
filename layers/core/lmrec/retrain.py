"""Retraining decisions: enough new interactions and no job of ours running -> one
SageMaker training job, named after the data version so replayed events start nothing new."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field

from lmrec import bundle as fmt
from lmrec import registry, store

log = logging.getLogger(__name__)


@dataclass
class RetrainConfig:
    store_uri: str  # s3://bucket
    model_name: str
    data_uri: str  # s3://bucket/data/interactions/
    training_image: str
    role_arn: str
    output_uri: str  # s3://bucket/training-output
    items_uri: str = ""
    min_new_interactions: int = 1000
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    volume_gb: int = 30
    max_runtime_seconds: int = 7200
    job_prefix: str = "lmrec-"
    hyperparameters: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The same prefix selects our jobs in the running-job check and the promote rule, so
        # it must be usable in a job name as it is.
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,20}", self.job_prefix):
            raise ValueError(f"job prefix {self.job_prefix!r} must match [a-z][a-z0-9-]{{0,20}}")
        if self.min_new_interactions < 0 or self.instance_count < 1:
            raise ValueError("min_new_interactions must be >= 0 and instance_count >= 1")


@dataclass
class RetrainDecision:
    action: str  # started | skipped
    reason: str
    job_name: str | None = None
    new_interactions: int = 0
    uncounted_objects: int = 0
    data_version: str | None = None


def count_rows(obj: store.ObjectInfo) -> int | None:
    """Data rows of a CSV/TSV object (streamed, header excluded); None when it cannot be
    counted without a Parquet reader (the Lambda carries none)."""
    name = obj.uri.lower()
    if name.endswith((".parquet", ".pq")):
        return None
    body = store.open_stream(obj.uri)
    try:
        stream = gzip.GzipFile(fileobj=body) if name.endswith(".gz") else body
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    finally:
        body.close()
    return max(0, lines - 1)


def data_version(objects: list[store.ObjectInfo]) -> str:
    digest = hashlib.sha256()
    for o in sorted(objects, key=lambda o: o.uri):
        digest.update(f"{o.uri}\t{o.etag}\t{o.size}\n".encode())
    return digest.hexdigest()[:12]


def job_name(prefix: str, version: str) -> str:
    return f"{prefix}{version}"[:63]  # prefix validated by RetrainConfig; version is hex


def production_data_time(cfg: RetrainConfig) -> float | None:
    """When the production model's training data was read (data uploaded after it is new);
    None when there is no production model yet."""
    from datetime import datetime

    try:
        pointer = registry.read_pointer(
            f"{cfg.store_uri.rstrip('/')}/models/{cfg.model_name}/production.json"
        )
    except registry.NoPointer:
        return None
    manifest = json.loads(store.read_bytes(f"{pointer.bundle_uri}/{fmt.MANIFEST}"))
    stamp = manifest.get("data_read_at") or manifest["created_at"]
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except (TypeError, ValueError):
        raise fmt.BundleError(f"production manifest has a bad timestamp {stamp!r}") from None


def training_job_request(cfg: RetrainConfig, name: str) -> dict:
    channels = [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": cfg.data_uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
    ]
    if cfg.items_uri:
        channels.append(
            {
                "ChannelName": "items",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": cfg.items_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        )
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": cfg.training_image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [
                {"Name": "valid_ndcg@10", "Regex": r"\bvalid_ndcg@10=([0-9.]+)"},
                {"Name": "train_loss", "Regex": r"\btrain_loss=([0-9.]+)"},
            ],
        },
        "RoleArn": cfg.role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": cfg.output_uri},
        "ResourceConfig": {
            "InstanceType": cfg.instance_type,
            "InstanceCount": cfg.instance_count,
            "VolumeSizeInGB": cfg.volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": cfg.max_runtime_seconds},
        "HyperParameters": {str(k): str(v) for k, v in cfg.hyperparameters.items()},
        "CheckpointConfig": {"S3Uri": f"{cfg.output_uri.rstrip('/')}/checkpoints/{name}"},
        "Tags": [{"Key": "lmrec:model", "Value": cfg.model_name}],
    }


def decide_and_start(cfg: RetrainConfig, sagemaker) -> RetrainDecision:
    objects = [o for o in store.list_objects(cfg.data_uri) if store.is_data_file(o.uri)]
    if not objects:
        return RetrainDecision("skipped", f"no data files under {cfg.data_uri}")
    items = (
        [o for o in store.list_objects(cfg.items_uri) if store.is_data_file(o.uri)]
        if cfg.items_uri
        else []
    )
    if cfg.items_uri and not items:
        # SageMaker fails a job whose S3Prefix channel is empty: leave the channel out.
        cfg = dataclasses.replace(cfg, items_uri="")
    version = data_version(objects + items)
    name = job_name(cfg.job_prefix, version)
    since = production_data_time(cfg)
    fresh = [o for o in objects if since is None or o.modified > since]
    counts = []
    for o in fresh:
        try:
            counts.append(count_rows(o))
        except (store.StoreError, OSError, EOFError) as exc:  # e.g. a corrupt gzip
            log.warning("cannot count rows of %s: %s", o.uri, exc)
            counts.append(None)  # uncounted: training will report what is wrong with it
    new = sum(c for c in counts if c is not None)
    uncounted = sum(c is None for c in counts)
    decision = RetrainDecision("skipped", "", name, new, uncounted, version)
    if new < cfg.min_new_interactions and not uncounted:
        decision.reason = (
            f"{new} new interactions since the production model, fewer than "
            f"{cfg.min_new_interactions}"
        )
        return decision
    try:
        existing = sagemaker.describe_training_job(TrainingJobName=name)
        decision.reason = (
            f"job {name} for this data version already exists ({existing['TrainingJobStatus']})"
        )
        return decision
    except sagemaker.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "ValidationException",
            "ResourceNotFound",
        ):
            raise
    running = sagemaker.list_training_jobs(NameContains=cfg.job_prefix, StatusEquals="InProgress")
    busy = [
        j["TrainingJobName"]
        for j in running.get("TrainingJobSummaries", [])
        if j["TrainingJobName"].startswith(cfg.job_prefix)
    ]
    if busy:
        decision.reason = f"a training job of ours is in progress: {busy[0]}"
        return decision
    try:
        sagemaker.create_training_job(**training_job_request(cfg, name))
    except sagemaker.exceptions.ResourceInUse:
        decision.reason = f"job {name} was started by a concurrent event"
        return decision
    decision.action = "started"
    decision.reason = (
        f"{new} new interactions"
        + (f" and {uncounted} uncounted Parquet object(s)" if uncounted else "")
        + " since the production model"
    )
    log.info("retrain decision %s", asdict(decision))
    return decision
