"""Lambda entry: EventBridge "SageMaker Training Job State Change" -> promotion decision.

Environment: LMREC_STORE_URI (s3://bucket), LMREC_MODEL_NAME, LMREC_GATE_TOLERANCE (absolute
NDCG@10 a candidate may lose against production), LMREC_JOB_PREFIX (only our jobs).
SageMaker may deliver the same event more than once; a decided job is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import asdict

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from lmrec.promote import Decision, Promoter

logger = Logger(service="lmrec-promote")
copy_config_to_registered_loggers(source_logger=logger, include={"lmrec"})

STORE_URI = os.environ.get("LMREC_STORE_URI", "")
MODEL_NAME = os.environ.get("LMREC_MODEL_NAME", "lmrec")
TOLERANCE = float(os.environ.get("LMREC_GATE_TOLERANCE", "0.002"))
JOB_PREFIX = os.environ.get("LMREC_JOB_PREFIX", "lmrec-")


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    detail = event.get("detail") or {}
    job = str(detail.get("TrainingJobName", ""))
    status = detail.get("TrainingJobStatus")
    if event.get("detail-type") != "SageMaker Training Job State Change" or not job:
        return asdict(Decision(job, "ignored", "not a training job state change"))
    if not job.startswith(JOB_PREFIX):
        return asdict(Decision(job, "ignored", f"not one of ours (prefix {JOB_PREFIX!r})"))
    promoter = Promoter(STORE_URI, MODEL_NAME, TOLERANCE)
    if status == "Failed":
        decision = promoter.on_failed(job, str(detail.get("FailureReason", "")))
    elif status == "Completed":
        artifact = (detail.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        if not artifact:
            decision = Decision(job, "rejected", "the event has no ModelArtifacts.S3ModelArtifacts")
        else:
            decision = promoter.on_completed(job, artifact)
    else:
        decision = Decision(job, "ignored", f"status {status!r} needs no action")
    logger.info("decision", extra=asdict(decision))
    return asdict(decision)
