"""Retraining decisions: enough new interactions and no job of ours running -> one
SageMaker training job, named after the data version so replayed events start nothing new.

Erasure does not wait for new data: when no training starts and erasure requests are
pending, the deletion job runs on its own (the training image, `python -m training erase`,
a CPU instance), unless one is already running. So a request waits at most one schedule
period plus that job's run."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime

from lmrec import bundle as fmt
from lmrec import erasure, registry, store
from lmrec.aws import error_code
from lmrec.settings import RetrainSettings

log = logging.getLogger(__name__)


RetrainConfig = RetrainSettings  # the retrain function's settings are its whole config


@dataclass
class RetrainDecision:
    action: str  # started | skipped
    reason: str
    job_name: str | None = None
    new_interactions: int = 0
    uncounted_objects: int = 0
    data_version: str | None = None
    erasures_pending: int = 0  # requests waiting when no training started
    erasure_job: str | None = None  # the deletion job started for them


ERASE_TAG = "erase-"  # <prefix>erase-<unix seconds>: the deletion job on its own


def is_erasure_job(name: str, prefix: str) -> bool:
    return name.startswith(f"{prefix}{ERASE_TAG}")


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
    return f"{prefix}{version}"[:63]  # prefix validated by RetrainSettings; version is hex


def job_identity(cfg: RetrainSettings) -> str:
    """What makes a training job another job for the same data: the image and the
    hyperparameters (and the machine). A change starts a job at once, without a back-off."""
    spec = {
        "image": cfg.training_image,
        "hyperparameters": {str(k): str(v) for k, v in sorted(cfg.hyperparameters.items())},
        "instance": [cfg.instance_type, cfg.instance_count, cfg.volume_gb],
        "max_runtime": cfg.max_runtime_seconds,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:6]


def attempt_name(base: str, attempt: int) -> str:
    return base if attempt == 1 else f"{base}-r{attempt}"


def production_data_time(cfg: RetrainConfig) -> float | None:
    """When the production model's training data was read (data uploaded after it is new);
    None when there is no production model yet."""

    try:
        pointer = registry.read_pointer(cfg.pointer_uri())
    except registry.NoPointer:
        return None
    except registry.CorruptPointer as exc:  # every file counts as new; promotion repairs it
        log.warning("%s; counting all data as new", exc)
        return None
    try:
        manifest = json.loads(store.read_bytes(f"{pointer.bundle_uri}/{fmt.MANIFEST}"))
        stamp = manifest.get("data_read_at") or manifest["created_at"]
        return datetime.fromisoformat(stamp).timestamp()
    except store.NotFound:
        log.warning("production names %s, whose bundle is gone", pointer.model_version)
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("production manifest has no usable timestamp (%s)", exc)
    return None


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
        "RoleArn": cfg.training_role_arn,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": cfg.output_uri},
        "ResourceConfig": {
            "InstanceType": cfg.instance_type,
            "InstanceCount": cfg.instance_count,
            "VolumeSizeInGB": cfg.volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": cfg.max_runtime_seconds},
        "HyperParameters": {str(k): str(v) for k, v in cfg.hyperparameters.items()},
        "Environment": cfg.training_environment(),
        "CheckpointConfig": {"S3Uri": f"{cfg.output_uri.rstrip('/')}/checkpoints/{name}"},
        "Tags": [{"Key": "lmrec:model", "Value": cfg.model_name}],
    }


def erasure_job_request(cfg: RetrainConfig, name: str) -> dict:
    """The deletion job alone: the training image running `python -m training erase` over
    the S3 data, batch outputs, the sync's fingerprints and the user store (from its
    Environment); no input channel, no model."""
    args = ["erase", "--requests", cfg.erasure_root(), "--data", cfg.data_uri]
    args += ["--batch", cfg.batch_uri] if cfg.batch_uri else []
    args += ["--state", cfg.history_state()] if cfg.history_state() else []
    args += ["--user-col", str(cfg.hyperparameters.get("user_col") or "user_id")]
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": cfg.training_image,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["python", "-m", "training"],
            "ContainerArguments": args,
        },
        "RoleArn": cfg.training_role_arn,
        "OutputDataConfig": {"S3OutputPath": cfg.output_uri},
        "ResourceConfig": {
            "InstanceType": cfg.erasure_instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": cfg.volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": cfg.erasure_max_runtime_seconds},
        "Environment": cfg.training_environment(),
        "Tags": [{"Key": "lmrec:model", "Value": cfg.model_name}],
    }


def _in_progress(sagemaker, cfg: RetrainSettings, erasing: bool) -> list[str]:
    """Our jobs in progress: deletion jobs, or training jobs (a deletion job does not hold
    back training: each rewrite is conditional, so the two may run together)."""
    running = sagemaker.list_training_jobs(NameContains=cfg.job_prefix, StatusEquals="InProgress")
    names = [j["TrainingJobName"] for j in running.get("TrainingJobSummaries", [])]
    return [
        n
        for n in names
        if n.startswith(cfg.job_prefix) and is_erasure_job(n, cfg.job_prefix) == erasing
    ]


def start_erasure_if_pending(
    cfg: RetrainSettings, sagemaker, decision: RetrainDecision, now: float
) -> None:
    """No training starts: carry out waiting erasure requests with a job of their own."""
    root = cfg.erasure_root()
    decision.erasures_pending = erasure.pending_count(root)  # a listing: no record is read
    if not decision.erasures_pending:
        return
    if _in_progress(sagemaker, cfg, erasing=True):
        return  # it will see these requests, or the next schedule's job will
    name = job_name(cfg.job_prefix, f"{ERASE_TAG}{int(now)}")
    try:
        sagemaker.create_training_job(**erasure_job_request(cfg, name))
    except sagemaker.exceptions.ResourceInUse:
        return  # started by a concurrent event in the same second
    decision.erasure_job = name
    log.info("deletion job %s for %d erasure request(s)", name, decision.erasures_pending)


def _not_found(sagemaker, exc: Exception) -> bool:
    return error_code(exc) in ("ValidationException", "ResourceNotFound")


def _last_attempt(sagemaker, base: str, limit: int) -> tuple[int, dict | None]:
    """(number of the newest attempt of this job, its description); (0, None) if none."""
    found: tuple[int, dict | None] = (0, None)
    for attempt in range(1, limit + 1):
        try:
            found = (
                attempt,
                sagemaker.describe_training_job(TrainingJobName=attempt_name(base, attempt)),
            )
        except sagemaker.exceptions.ClientError as exc:
            if not _not_found(sagemaker, exc):
                raise
            break
    return found


def _ended(job: dict) -> float:
    stamp = job.get("TrainingEndTime") or job.get("LastModifiedTime") or job.get("CreationTime")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    return float(stamp or 0)


def _retry_plan(cfg: RetrainSettings, sagemaker, base: str, now: float) -> tuple[str | None, str]:
    """(name of the job to start, why) or (None, why not), from earlier attempts."""
    attempt, job = _last_attempt(sagemaker, base, cfg.max_attempts_per_version)
    if job is None:
        return base, "first attempt for this data version and configuration"
    name, status = attempt_name(base, attempt), job["TrainingJobStatus"]
    if status not in ("Failed", "Stopped"):
        return None, f"job {name} for this data version already exists ({status})"
    why = str(job.get("FailureReason") or status)[:300]
    wait = _ended(job) + cfg.retry_backoff_seconds - now
    if wait > 0:
        return None, (
            f"job {name} {status.lower()} ({why}); retry after the back-off, in {wait:.0f} s "
            "(or at once with other hyperparameters or another image)"
        )
    if attempt >= cfg.max_attempts_per_version:
        return None, f"job {name} {status.lower()}; gave up after {attempt} attempts"
    return attempt_name(base, attempt + 1), (
        f"retry {attempt + 1}: job {name} {status.lower()} ({why}) and the back-off of "
        f"{cfg.retry_backoff_seconds:g} s has passed"
    )


def _new_configuration(sagemaker, cfg: RetrainSettings, version: str, base: str) -> bool:
    """Whether jobs for this data version ran with another image or hyperparameters."""
    stem = job_name(cfg.job_prefix, version)
    reply = sagemaker.list_training_jobs(NameContains=stem, MaxResults=100)
    return any(
        not j["TrainingJobName"].startswith(base) for j in reply.get("TrainingJobSummaries", [])
    )


def _count_new(cfg: RetrainSettings, objects: list[store.ObjectInfo]) -> tuple[int, int, int]:
    """(new rows counted, objects that could not be counted, new objects left unread): no
    more objects are read once the threshold is met (each is a streamed GET: thousands
    would outlast the function)."""
    since = production_data_time(cfg)
    fresh = [o for o in objects if since is None or o.modified > since]
    new = uncounted = read = 0
    for o in fresh:
        if new >= cfg.min_new_interactions:
            break
        read += 1
        try:
            rows = count_rows(o)
        except (store.StoreError, OSError, EOFError, zlib.error) as exc:  # a corrupt gzip
            log.warning("cannot count rows of %s: %s", o.uri, exc)
            rows = None  # uncounted: training will report what is wrong with it
        if rows is None:
            uncounted += 1
        else:
            new += rows
    return new, uncounted, len(fresh) - read


def decide_and_start(cfg: RetrainSettings, sagemaker, now: float | None = None) -> RetrainDecision:
    """Start training when due; otherwise, a deletion job when erasures wait."""
    now = time.time() if now is None else now
    decision = decide_training(cfg, sagemaker, now)
    if decision.action != "started":  # a training job runs the deletion job first itself
        start_erasure_if_pending(cfg, sagemaker, decision, now)
    return decision


def _as_folders(cfg: RetrainSettings, objects: list, items: list) -> dict[str, str]:
    """The data and items locations with a trailing slash where they are folders: a channel's
    S3Prefix "data/interactions" would also download "data/interactions-archive/", files
    this function neither counted nor put in the data version."""
    out = {}
    for field, found in (("data_uri", objects), ("items_uri", items)):
        uri = getattr(cfg, field)
        if uri and not uri.endswith("/") and any(o.uri != uri for o in found):
            out[field] = uri + "/"
    return out


def decide_training(cfg: RetrainSettings, sagemaker, now: float) -> RetrainDecision:
    objects = [
        o for o in store.list_objects(cfg.data_uri) if store.is_data_file(o.uri, cfg.data_uri)
    ]
    if not objects:
        return RetrainDecision("skipped", f"no data files under {cfg.data_uri}")
    items = (
        [o for o in store.list_objects(cfg.items_uri) if store.is_data_file(o.uri, cfg.items_uri)]
        if cfg.items_uri
        else []
    )
    if cfg.items_uri and not items:
        # SageMaker fails a job whose S3Prefix channel is empty: leave the channel out.
        cfg = cfg.model_copy(update={"items_uri": ""})
    cfg = cfg.model_copy(update=_as_folders(cfg, objects, items))
    version = data_version(objects + items)
    base = job_name(cfg.job_prefix, f"{version}-{job_identity(cfg)}")
    new, uncounted, unread = _count_new(cfg, objects)
    decision = RetrainDecision("skipped", "", base, new, uncounted, version)
    if new < cfg.min_new_interactions and not uncounted:
        decision.reason = (
            f"{new} new interactions since the production model, fewer than "
            f"{cfg.min_new_interactions}"
        )
        return decision
    name, plan = _retry_plan(cfg, sagemaker, base, now)
    if name is None:
        decision.reason = plan
        log.info("retrain decision %s", asdict(decision))
        return decision
    decision.job_name = name
    busy = _in_progress(sagemaker, cfg, erasing=False)
    if busy:
        decision.reason = f"a training job of ours is in progress: {busy[0]}"
        return decision
    if name == base and _new_configuration(sagemaker, cfg, version, base):
        plan = "new hyperparameters or image for this data version: started at once"
    try:
        sagemaker.create_training_job(**training_job_request(cfg, name))
    except sagemaker.exceptions.ResourceInUse:
        decision.reason = f"job {name} was started by a concurrent event"
        return decision
    decision.action = "started"
    counted = f"at least {new}" if unread else str(new)
    decision.reason = (
        f"{counted} new interactions"
        + (
            f" and {uncounted} object(s) whose rows were not counted (Parquet, or unreadable)"
            if uncounted
            else ""
        )
        + f" since the production model; {plan}"
    )
    log.info("retrain decision %s", asdict(decision))
    return decision
