"""Lambda entry: on a schedule (EventBridge Scheduler) and on new data (S3 "Object Created"
via EventBridge), start a training job when enough new interactions arrived, or retry a
failed one after the back-off. Every decision is logged and returned with its reason.

Settings: lmrec.settings.RetrainSettings (LMREC_DATA_URI, LMREC_TRAINING_IMAGE, ...)."""

from __future__ import annotations

from dataclasses import asdict

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from lmrec import aws
from lmrec.lifecycle_events import BadEvent, parse_retrain_trigger
from lmrec.retrain import RetrainDecision, decide_and_start
from lmrec.settings import RetrainSettings

logger = Logger(service="lmrec-retrain")
copy_config_to_registered_loggers(source_logger=logger, include={"lmrec"})
_SAGEMAKER = None


def config_from_env() -> RetrainSettings:
    """The settings, read from the environment now (bad values: pydantic's message)."""
    return RetrainSettings()  # fields come from the environment


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    global _SAGEMAKER
    try:
        trigger = parse_retrain_trigger(event)
    except BadEvent as exc:
        return asdict(RetrainDecision("skipped", str(exc)))
    settings = config_from_env()
    if _SAGEMAKER is None:
        aws.configure(settings)
        _SAGEMAKER = aws.client("sagemaker")
    decision = decide_and_start(settings, _SAGEMAKER)
    logger.info("retrain decision", extra={"trigger": trigger.source, **asdict(decision)})
    return asdict(decision)
