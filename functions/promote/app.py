"""Lambda entry: EventBridge "SageMaker Training Job State Change" -> promotion decision.

Settings: lmrec.settings.PromoteSettings (LMREC_STORE_URI, LMREC_MODEL_NAME,
LMREC_GATE_TOLERANCE, LMREC_JOB_PREFIX, the AWS time budget). SageMaker may deliver the same
event more than once; a decided job is a no-op, and the production pointer changes only by
compare-and-swap, so concurrent deliveries promote once.
"""

from __future__ import annotations

from dataclasses import asdict

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from lmrec import aws
from lmrec.lifecycle_events import BadEvent, parse_training_job_change
from lmrec.promote import Decision, Promoter
from lmrec.retrain import is_erasure_job
from lmrec.settings import PromoteSettings

logger = Logger(service="lmrec-promote")
copy_config_to_registered_loggers(source_logger=logger, include={"lmrec"})
settings = PromoteSettings()  # read from the environment; bad values stop here
aws.configure(settings)


def decide(event: object) -> Decision:
    try:
        change = parse_training_job_change(event)
    except BadEvent as exc:
        return Decision("", "ignored", str(exc))
    detail = change.detail
    job = detail.TrainingJobName
    if not job.startswith(settings.job_prefix):
        return Decision(job, "ignored", f"not one of ours (prefix {settings.job_prefix!r})")
    promoter = Promoter(settings.store_uri, settings.model_name, settings.gate_tolerance)
    if is_erasure_job(job, settings.job_prefix) and detail.TrainingJobStatus == "Completed":
        return Decision(job, "ignored", "a deletion job: it writes no model")  # failed: recorded
    if detail.TrainingJobStatus == "Failed":
        return promoter.on_failed(job, detail.FailureReason)
    if detail.TrainingJobStatus != "Completed":
        return Decision(job, "ignored", f"status {detail.TrainingJobStatus!r} needs no action")
    if detail.ModelArtifacts is None:
        return Decision(job, "rejected", "the event has no ModelArtifacts.S3ModelArtifacts")
    return promoter.on_completed(job, detail.ModelArtifacts.S3ModelArtifacts)


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    decision = decide(event)
    logger.info("decision", extra=asdict(decision))
    return asdict(decision)
