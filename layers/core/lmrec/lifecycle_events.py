"""The EventBridge events the lifecycle functions accept, as Powertools Parser models
(pydantic): a malformed event becomes one readable line, never a KeyError in a handler.

retrain: S3 "Object Created" (through EventBridge) and EventBridge Scheduler's scheduled
event; promote: "SageMaker Training Job State Change".
"""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    S3EventNotificationEventBridgeModel,
)
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lmrec.redact import truncate


class Artifacts(BaseModel):
    S3ModelArtifacts: str = Field(min_length=1, max_length=2048)


class TrainingJobDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # SageMaker's own rule for job names: also what keeps decisions/<job>.json inside decisions/
    TrainingJobName: str = Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    TrainingJobStatus: str = Field(min_length=1, max_length=32)
    FailureReason: str = Field(default="", max_length=10_000)
    ModelArtifacts: Artifacts | None = None


class TrainingJobStateChange(EventBridgeModel):
    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Training Job State Change"] = Field(alias="detail-type")
    detail: TrainingJobDetail


class ScheduledEvent(EventBridgeModel):
    source: Literal["aws.scheduler", "aws.events", "lmrec.local"]


class ObjectCreated(S3EventNotificationEventBridgeModel):
    source: Literal["aws.s3"]
    detail_type: Literal["Object Created"] = Field(alias="detail-type")


_RETRAIN: TypeAdapter[ObjectCreated | ScheduledEvent] = TypeAdapter(ObjectCreated | ScheduledEvent)


class BadEvent(ValueError):
    """The event is not one this function handles; the message says why in one line."""


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "event"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return truncate("; ".join(parts), 400)


def parse_training_job_change(event: object) -> TrainingJobStateChange:
    try:
        return TrainingJobStateChange.model_validate(event)
    except ValidationError as exc:
        raise BadEvent(f"not a training job state change: {_explain(exc)}") from None


def parse_retrain_trigger(event: object) -> ObjectCreated | ScheduledEvent:
    try:
        return _RETRAIN.validate_python(event)
    except ValidationError as exc:
        raise BadEvent(f"not an S3 Object Created or scheduled event: {_explain(exc)}") from None


def parse_object_created(event: object, prefix: str) -> ObjectCreated:
    """An S3 Object Created event for a key under `prefix`, else BadEvent."""
    try:
        created = ObjectCreated.model_validate(event)
    except ValidationError as exc:
        raise BadEvent(f"not an S3 Object Created event: {_explain(exc)}") from None
    key = created.detail.object.key
    if not key.startswith(prefix) or key.endswith("/"):
        raise BadEvent(f"{truncate(key)!r} is not a file under {prefix}")
    return created
