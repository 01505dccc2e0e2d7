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


_CLIENT = None


def _client():
    global _CLIENT
    if _CLIENT is None:  # one client per container, created on first use
        from lmrec.store import aws_client

        _CLIENT = aws_client("dynamodb")
    return _CLIENT


def reset_client() -> None:
    """Forget the cached client (after the endpoint or credentials changed)."""
    global _CLIENT
    _CLIENT = None
