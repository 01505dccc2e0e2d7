"""Lambda entry: on a schedule (EventBridge Scheduler) and on new data (S3 "Object Created"
via EventBridge), start a training job when enough new interactions arrived. Every decision
is logged and returned."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from lmrec.retrain import RetrainConfig, RetrainDecision, decide_and_start

logger = Logger(service="lmrec-retrain")
copy_config_to_registered_loggers(source_logger=logger, include={"lmrec"})
_SAGEMAKER = None


def config_from_env(env=os.environ) -> RetrainConfig:
    return RetrainConfig(
        store_uri=env["LMREC_STORE_URI"],
        model_name=env.get("LMREC_MODEL_NAME", "lmrec"),
        data_uri=env["LMREC_DATA_URI"],
        items_uri=env.get("LMREC_ITEMS_URI", ""),
        training_image=env["LMREC_TRAINING_IMAGE"],
        role_arn=env["LMREC_TRAINING_ROLE_ARN"],
        output_uri=env["LMREC_OUTPUT_URI"],
        min_new_interactions=int(env.get("LMREC_MIN_NEW_INTERACTIONS", "1000")),
        instance_type=env.get("LMREC_INSTANCE_TYPE", "ml.g5.xlarge"),
        instance_count=int(env.get("LMREC_INSTANCE_COUNT", "1")),
        max_runtime_seconds=int(env.get("LMREC_MAX_RUNTIME_SECONDS", "7200")),
        job_prefix=env.get("LMREC_JOB_PREFIX", "lmrec-"),
        hyperparameters=json.loads(env.get("LMREC_HYPERPARAMETERS", "{}") or "{}"),
    )


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    global _SAGEMAKER
    source = event.get("source", "")
    if source not in ("aws.s3", "aws.scheduler", "aws.events", "lmrec.local"):
        return asdict(RetrainDecision("skipped", f"unexpected event source {source!r}"))
    if _SAGEMAKER is None:
        _SAGEMAKER = boto3.client("sagemaker")
    decision = decide_and_start(config_from_env(), _SAGEMAKER)
    logger.info("retrain decision", extra={"trigger": source, **asdict(decision)})
    return asdict(decision)
