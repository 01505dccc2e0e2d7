"""Real-time interaction events: what one is, and the DynamoDB client the user store uses.

Events live in the user store (lmrec.userstore: partition = user, sort key = time + a digest
of item and type, TTL); the next recommendation for a user merges them with the user's
history, so an event takes effect on the next request (no retraining)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Event:
    user_id: str
    item_id: str
    timestamp: float  # unix seconds
    event_type: str = "interaction"


# (the AWS_ENDPOINT_URL it was made for, the client): one per container, made on first use.
_CLIENT: tuple[str | None, object] | None = None


def _client():
    """The DynamoDB client, made anew when AWS_ENDPOINT_URL changed since it was made (never
    in Lambda; in the local stack and the tests a thread left from an earlier server could
    otherwise cache a client for the wrong endpoint, or for AWS itself). The client is made
    FOR the endpoint it is cached under: botocore reading the variable again a moment later,
    after a test had unset it, once cached an AWS client under the moto endpoint."""
    global _CLIENT
    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    cached = _CLIENT
    if cached is None or cached[0] != endpoint:
        from lmrec.store import aws_client

        cached = _CLIENT = (endpoint, aws_client("dynamodb", endpoint))
    return cached[1]


def reset_client() -> None:
    """Forget the cached client (after the endpoint or credentials changed)."""
    global _CLIENT
    _CLIENT = None
