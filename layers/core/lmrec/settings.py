"""Runtime settings of the three functions (api, retrain, promote), read once from the
environment. Every environment name is LMREC_<FIELD> (upper case), defined here and nowhere
else; bad values fail fast at import with pydantic's message.

The time bounds of AWS calls live here too: (connect + read) x attempts must fit inside the
function's own timeout, or a slow dependency would outlast the function and the caller would
get the platform's timeout instead of our answer.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, Json, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LMREC_"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def models_prefix(store_uri: str, model_name: str) -> str:
    """models/<name> under a store root: versions, decisions and the pointer live here."""
    return f"{store_uri.rstrip('/')}/models/{model_name}"


def pointer_uri(store_uri: str, model_name: str) -> str:
    """The production pointer, models/<name>/production.json: the one place it is named."""
    return f"{models_prefix(store_uri, model_name)}/production.json"


def store_root(value: str, name: str) -> str:
    """An s3:// or file:// root without its trailing slash ("" stays: not configured)."""
    value = value.rstrip("/")
    if value and not value.startswith(("s3://", "file://")):
        raise ValueError(f"{name} must start with s3:// or file://")
    return value


def erasure_root(erasure_uri: str, store_uri: str) -> str:
    """Where erasure requests are recorded: LMREC_ERASURE_URI, else <LMREC_STORE_URI>/erasure,
    else "" (nowhere). The one rule the API, the retrain function, the training job and
    `lmrec sync-histories` share, so they all look in the same place."""
    if erasure_uri:
        return store_root(erasure_uri, "LMREC_ERASURE_URI")
    store = store_root(store_uri, "LMREC_STORE_URI")
    return f"{store}/erasure" if store else ""


class CommonSettings(BaseSettings):
    """What every function reads: the store, the model name, and the AWS time budget."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # Where models live: s3://bucket[/prefix] in AWS (or on a local S3 endpoint through
    # AWS_ENDPOINT_URL), or file:///path for the embedded default.
    store_uri: str = Field(default="", description="model store root; empty = no model")
    model_name: str = Field(default="lmrec", pattern=MODEL_NAME_PATTERN)
    cache_dir: str = "/tmp"  # the only writable path in Lambda
    # The function's own timeout (template.yaml); the budgets below must fit inside it.
    function_timeout_seconds: float = Field(default=300.0, gt=0, le=900)
    aws_connect_timeout: float = Field(default=2.0, gt=0, le=60)
    aws_read_timeout: float = Field(default=10.0, gt=0, le=300)
    aws_max_attempts: int = Field(default=3, ge=1, le=10)

    @field_validator("store_uri")
    @classmethod
    def _scheme(cls, value: str) -> str:
        return store_root(value, "LMREC_STORE_URI")

    @model_validator(mode="after")
    def _budget_fits(self) -> CommonSettings:
        worst = self.aws_call_budget_seconds()
        if worst >= self.function_timeout_seconds:
            raise ValueError(
                f"an AWS call may take (connect {self.aws_connect_timeout} + read "
                f"{self.aws_read_timeout}) x {self.aws_max_attempts} attempts = {worst:g} s, "
                f"not less than the function timeout {self.function_timeout_seconds:g} s"
            )
        return self

    def aws_call_budget_seconds(self) -> float:
        """The longest one AWS call can take with these settings (retry pauses aside)."""
        return (self.aws_connect_timeout + self.aws_read_timeout) * self.aws_max_attempts

    def pointer_uri(self) -> str:
        return pointer_uri(self.store_uri, self.model_name)

    def models_prefix(self) -> str:
        return models_prefix(self.store_uri, self.model_name)


class ApiSettings(CommonSettings):
    """The recommendation API (Lambda timeout 10 s in template.yaml)."""

    function_timeout_seconds: float = Field(default=10.0, gt=0, le=900)
    aws_connect_timeout: float = Field(default=0.5, gt=0, le=60)
    aws_read_timeout: float = Field(default=1.0, gt=0, le=300)
    aws_max_attempts: int = Field(default=2, ge=1, le=10)
    refresh_seconds: float = Field(default=60.0, ge=1.0, le=86400.0)
    # How long a cold start waits for the model before the routes answer 503 (and the load
    # goes on, or is retried by a later request), and how long a request with no model
    # waits for a new attempt.
    init_load_seconds: float = Field(default=4.0, gt=0, le=60)
    load_wait_seconds: float = Field(default=2.0, gt=0, le=60)
    # A recommendation waits this long for the user's stored events, then answers from
    # what it has (the request's own history, else popularity) and says so.
    user_store_deadline_seconds: float = Field(default=1.0, gt=0, le=60)
    # The user store (histories + real-time events): dynamodb://table or sqlite:///path.
    # Empty: no per-user data at all.
    user_store: str = ""
    # Where DELETE /v1/users/{id} records erasure requests for the deletion job; empty:
    # <LMREC_STORE_URI>/erasure when a model store is set.
    erasure_uri: str = ""
    # DELETE /v1/users/{id} replies within this (the request is recorded first); a user
    # store delete that needs longer is finished by the deletion job.
    erasure_deadline_seconds: float = Field(default=8.0, gt=0, le=900)
    events_ttl_days: int = Field(default=90, ge=1, le=3650)
    events_per_user: int = Field(default=50, ge=1, le=1000)  # newest events merged per request
    # Default of a recommendation request's exclude_seen; unset: the model's (its manifest's
    # repeats: off when training kept repeated (user, item) rows, on when it dropped them).
    exclude_seen: bool | None = Field(default=None)
    max_body_bytes: int = Field(default=262_144, ge=1024, le=6_291_456)  # Lambda: 6 MB
    # What is popular now (lmrec.trending): counters older than the window are not read
    # (and expire); GET /v1/trending's half_life_hours defaults to trending_half_life_hours
    # and may be at most the window; counts are re-read at most every trending_cache_seconds
    # per warm instance (an event counts within that and the settle time); the training
    # data's recent popularity weighs as much as trending_prior_events fresh events.
    trending_window_hours: float = Field(default=24.0, ge=1.0, le=720.0)
    trending_half_life_hours: float = Field(default=6.0, ge=0.1, le=720.0)
    trending_cache_seconds: float = Field(default=10.0, ge=0.0, le=600.0)
    trending_prior_events: float = Field(default=100.0, ge=0.0, le=1e9)
    # counters one refresh reads at most, newest first (lmrec.trending.MAX_COUNTERS: cost)
    trending_max_counters: int = Field(default=160_000, ge=16, le=2_000_000)
    # The answer for a user with no usable history: all-time popularity from the training
    # data (popular), or the decayed counts (trending); auto: what the model's training job
    # measured on this data (its manifest's cold_start: trending only when recent popularity
    # beat popularity on valid beyond noise; lmrec.bundle.default_cold_start).
    cold_start: Literal["auto", "popular", "trending"] = "auto"
    metrics_namespace: str = "lmrec"
    # none: development only (localhost); iam: a backend signs requests and may act for any
    # user; jwt: the user id comes from the token's claim, and only the service scope acts
    # for others. template.yaml sets it for the deployed function.
    auth: Literal["none", "iam", "jwt"] = "none"
    jwt_user_claim: str = Field(default="sub", min_length=1, max_length=128)
    jwt_service_scope: str = Field(default="lmrec/any-user", min_length=1, max_length=256)
    # Items added after the model (lmrec.liveitems): dynamodb://table, or "" for none. A warm
    # instance polls it when a request finds its view older than item_poll_seconds, and a
    # request waits for a poll when the view is older than item_max_stale_seconds (the bound
    # on how late a change is seen).
    item_store: str = ""
    item_poll_seconds: float = Field(default=2.0, ge=0.5, le=60)
    item_max_stale_seconds: float = Field(default=8.0, ge=1.0, le=300)
    # Exploration: the share of k reserved for new items younger than the age cut-off,
    # ranked by their content score. Off by default; a request may set its own.
    explore_share: float = Field(default=0.0, ge=0.0, le=0.5)
    explore_max_age_hours: float = Field(default=72.0, gt=0, le=8760)

    @field_validator("item_store")
    @classmethod
    def _item_store(cls, value: str) -> str:
        if value:
            from lmrec.itemstore import parse_uri as parse_items

            try:
                parse_items(value)
            except ValueError as exc:
                raise ValueError(f"LMREC_ITEM_STORE {exc}") from None
        return value

    @field_validator("user_store")
    @classmethod
    def _user_store(cls, value: str) -> str:
        if value:
            from lmrec.userstore import UserStoreError, parse_uri

            try:
                parse_uri(value)
            except UserStoreError as exc:
                raise ValueError(f"LMREC_USER_STORE {exc}") from None
        return value

    @field_validator("erasure_uri")
    @classmethod
    def _erasure(cls, value: str) -> str:
        return store_root(value, "LMREC_ERASURE_URI")

    def user_store_uri(self) -> str:
        """The user store to use, or "" for none."""
        return self.user_store

    def erasure_root(self) -> str:
        """Where erasure requests are recorded, or "" for nowhere."""
        return erasure_root(self.erasure_uri, self.store_uri)

    def erasure_stop_seconds(self) -> float:
        """When DELETE starts no more user-store calls: one call started then still ends
        (all its attempts) by the erasure deadline."""
        return max(0.0, self.erasure_deadline_seconds - self.aws_call_budget_seconds())

    @model_validator(mode="after")
    def _half_life_fits(self) -> ApiSettings:
        if self.trending_half_life_hours > self.trending_window_hours:
            raise ValueError(
                f"trending_half_life_hours ({self.trending_half_life_hours:g}) must be at most "
                f"trending_window_hours ({self.trending_window_hours:g})"
            )
        return self

    @model_validator(mode="after")
    def _waits_fit(self) -> ApiSettings:
        waits = (
            "init_load_seconds",
            "load_wait_seconds",
            "user_store_deadline_seconds",
            "erasure_deadline_seconds",
        )
        if self.item_poll_seconds > self.item_max_stale_seconds:
            raise ValueError("item_poll_seconds must not exceed item_max_stale_seconds")
        for name in waits:
            if getattr(self, name) >= self.function_timeout_seconds:
                raise ValueError(
                    f"{name} ({getattr(self, name):g} s) must be less than the function "
                    f"timeout ({self.function_timeout_seconds:g} s)"
                )
        return self


Settings = ApiSettings  # the API's settings, under the name the API modules import


class RetrainSettings(CommonSettings):
    """The retrain function: when to start a SageMaker training job, and which."""

    store_uri: str = Field(min_length=1, description="model store root (s3://bucket)")
    data_uri: str  # s3://bucket/data/interactions/
    output_uri: str  # s3://bucket/training-output
    training_image: str = Field(min_length=1)
    training_role_arn: str = Field(min_length=1)
    items_uri: str = ""
    min_new_interactions: int = Field(default=1000, ge=0)
    instance_type: str = "ml.g5.xlarge"
    instance_count: int = Field(default=1, ge=1, le=100)
    volume_gb: int = Field(default=30, ge=1, le=16384)
    # At least 900: a job's automatic budget is at least 480 s (training/plan.py GOAL_MIN),
    # and the container's start, the data's download, the deletion job before training and
    # the history sync after it come on top; SageMaker stops a job at this limit, bundle-less.
    max_runtime_seconds: int = Field(default=7200, ge=900, le=28 * 86400)
    job_prefix: str = Field(default="lmrec-", pattern=r"^[a-z][a-z0-9-]{0,20}$")
    hyperparameters: Json[dict[str, str | int | float | bool]] | dict = Field(default_factory=dict)
    # A failed job of a data version is started again after this pause (at once when the
    # hyperparameters or the image change, since that is another job).
    retry_backoff_seconds: float = Field(default=3600.0, ge=0, le=30 * 86400)
    max_attempts_per_version: int = Field(default=5, ge=1, le=50)
    # Handed to the training job's Environment (training/userdata.py): the deletion job runs
    # before training, the history sync after it.
    user_store: str = ""  # dynamodb://table the sync writes histories to; empty: no sync
    erasure_uri: str = ""  # s3://bucket/erasure; empty: <store_uri>/erasure
    # The deletion job started on the schedule when erasures are pending and no training is
    # due: the training image on a CPU instance, bounded in time.
    erasure_instance_type: str = "ml.m5.large"
    erasure_max_runtime_seconds: int = Field(default=3600, ge=60, le=28 * 86400)
    batch_uri: str = ""  # s3://bucket/batch/: batch outputs (user ids) the deletion job purges
    history_state_uri: str = ""  # the sync's fingerprints; empty: s3://<bucket>/histories/...
    history_length: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _empty_json(cls, value):
        return "{}" if value == "" else value

    @field_validator("erasure_uri")
    @classmethod
    def _erasure(cls, value: str) -> str:
        return store_root(value, "LMREC_ERASURE_URI")

    def erasure_root(self) -> str:
        return erasure_root(self.erasure_uri, self.store_uri)

    def history_state(self) -> str:
        """The sync's fingerprints: as training/userdata.py derives them from the data."""
        if self.history_state_uri:
            return self.history_state_uri
        bucket = self.data_uri.removeprefix("s3://").split("/", 1)[0]
        return (
            f"s3://{bucket}/histories/fingerprints.npz" if self.data_uri.startswith("s3://") else ""
        )

    def training_environment(self) -> dict[str, str]:
        env = {
            # where production is: the job scores it on its own test users (the gate's input)
            "LMREC_STORE_URI": self.store_uri,
            "LMREC_MODEL_NAME": self.model_name,
            "LMREC_DATA_URI": self.data_uri,
            "LMREC_USER_STORE": self.user_store,
            "LMREC_ERASURE_URI": self.erasure_root(),
            "LMREC_BATCH_URI": self.batch_uri,
            "LMREC_HISTORY_STATE_URI": self.history_state_uri,
            "LMREC_HISTORY_LENGTH": str(self.history_length),
        }
        return {k: v for k, v in env.items() if v}


class PromoteSettings(CommonSettings):
    """The promote function: the quality gate and which jobs are ours."""

    store_uri: str = Field(min_length=1, description="model store root (s3://bucket)")
    aws_read_timeout: float = Field(default=20.0, gt=0, le=300)
    # Test NDCG@10 a candidate may lose against production: rejected only when the 95%
    # interval of the paired difference lies wholly below -gate_tolerance (lmrec.promote).
    gate_tolerance: float = Field(default=0.002, ge=0, le=1)
    job_prefix: str = Field(default="lmrec-", pattern=r"^[a-z][a-z0-9-]{0,20}$")


class ItemsSettings(CommonSettings):
    """The items function: where live items are stored."""

    item_store: str = Field(min_length=1, description="dynamodb://table")
    function_timeout_seconds: float = Field(default=120.0, gt=0, le=900)

    @field_validator("item_store")
    @classmethod
    def _item_store(cls, value: str) -> str:
        from lmrec.itemstore import parse_uri as parse_items

        parse_items(value)  # a UserStoreError is a ValueError: pydantic's message
        return value


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    return ApiSettings()
