"""Every AWS client lmrec creates comes from here, with a time budget that fits the function.

botocore's defaults (60 s connect, 60 s read, legacy retries with up to 5 attempts) let one
call to an endpoint that accepts and never answers outlast a 10 s Lambda timeout many times
over. Each function calls configure() with its settings at import; clients created after
that connect, read and retry within (connect + read) x attempts, which the settings check
against the function's timeout (lmrec.settings).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    max_attempts: int = 3  # total, the first try included

    def worst_case_seconds(self) -> float:
        return (self.connect_timeout + self.read_timeout) * self.max_attempts


_budget = Budget()
_lock = threading.Lock()


def configure(settings) -> Budget:
    """Use this function's settings (lmrec.settings.CommonSettings) for clients made from now
    on; returns the budget."""
    global _budget
    with _lock:
        _budget = Budget(
            float(settings.aws_connect_timeout),
            float(settings.aws_read_timeout),
            int(settings.aws_max_attempts),
        )
    return _budget


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore error ("" for none): a ClientError's response is a
    dict, but ReadTimeoutError and other network errors have `response = None` or none."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def budget() -> Budget:
    return _budget


def client_config(b: Budget | None = None):
    """The botocore Config of a client: bounded connect/read, standard retry mode with a
    total attempt count (legacy mode counts retries differently and retries more)."""
    from botocore.config import Config

    b = b or _budget
    return Config(
        connect_timeout=b.connect_timeout,
        read_timeout=b.read_timeout,
        retries={"mode": "standard", "total_max_attempts": b.max_attempts},
        # Lambda can run calls in parallel threads (bundle files download at once).
        max_pool_connections=16,
    )


def client(service: str, b: Budget | None = None, endpoint_url: str | None = None):
    """A botocore client (boto3 without the resource layer and s3transfer: about 0.1 s less
    to import on a cold start). Honours AWS_ENDPOINT_URL and the usual credential chain;
    `endpoint_url`, when given, is the one the caller cached the client under (the variable
    read again here could have changed in between)."""
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(service, endpoint_url=endpoint_url, config=client_config(b))


# service -> (the endpoint it was made for, the client): one per container, made on first use.
_clients: dict[str, tuple[str | None, object]] = {}
_clients_lock = threading.Lock()  # bundle files download in parallel threads; one client for all


def endpoint(service: str) -> str | None:
    """The endpoint botocore takes from the environment for `service` (None: AWS itself)."""
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
    return specific or os.environ.get("AWS_ENDPOINT_URL")


def cached_client(service: str):
    """The process's client for `service` (cheap Lambda warm starts), made anew when the
    endpoint changed since it was made: never in Lambda, but in the local stack and the
    tests a thread left from an earlier server could otherwise use a client for the wrong
    endpoint, or for AWS itself. The client is made FOR the endpoint it is cached under:
    botocore reading the variable again a moment later, after a test had unset it, once
    cached an AWS client under the moto endpoint (tests/test_aws_clients.py)."""
    url = endpoint(service)
    with _clients_lock:
        cached = _clients.get(service)
        if cached is None or cached[0] != url:
            cached = _clients[service] = (url, client(service, endpoint_url=url))
        return cached[1]


def reset_clients() -> None:
    """Forget every cached client (after the endpoint or the credentials changed)."""
    with _clients_lock:
        _clients.clear()


def create_keyed_table(name: str, hash_key: str, range_key: str) -> None:
    """An on-demand table of string hash and range keys, as template.yaml declares the user
    store (user_id, sk) and the item store (p, sk): the local stack and tests create theirs
    here, on the endpoint boto3 is pointed at."""
    client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": hash_key, "AttributeType": "S"},
            {"AttributeName": range_key, "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
    )
