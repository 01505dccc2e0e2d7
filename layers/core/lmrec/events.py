"""Real-time interaction events: what one is, and the DynamoDB client the user store uses.

Events live in the user store (lmrec.userstore: partition = user, sort key = time + a digest
of item and type, TTL); the next recommendation for a user merges them with the user's
history, so an event takes effect on the next request (no retraining)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Event:
    user_id: str
    item_id: str
    timestamp: float  # unix seconds
    event_type: str = "interaction"


def _client():
    """The DynamoDB client the user and item stores share (lmrec.aws.cached_client)."""
    from lmrec import aws

    return aws.cached_client("dynamodb")
