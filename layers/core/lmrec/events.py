"""Real-time interaction events in DynamoDB: partition key user_id, sort key time#id, TTL.

The next recommendation for a user merges these with the history stored in the bundle, so an
event takes effect on the next request (no retraining)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass


class EventsUnavailable(RuntimeError):
    """The events table could not be reached or used."""


@dataclass
class Event:
    user_id: str
    item_id: str
    timestamp: float  # unix seconds
    event_type: str = "interaction"


_CLIENT = None
BATCH = 25  # DynamoDB's BatchWriteItem limit


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


def _sort_key(ts: float) -> str:
    # Fixed-width milliseconds sort as strings; the suffix keeps same-ms events apart.
    return f"{round(ts * 1000):015d}#{uuid.uuid4().hex[:12]}"


class EventStore:
    def __init__(self, table_name: str, ttl_days: int = 90):
        self.table_name = table_name
        self.ttl_seconds = ttl_days * 86400

    def _write(self, requests: list[dict]) -> None:
        for start in range(0, len(requests), BATCH):
            pending = {self.table_name: requests[start : start + BATCH]}
            for attempt in range(5):  # unprocessed items come back under throttling
                left = _client().batch_write_item(RequestItems=pending).get("UnprocessedItems")
                if not left:
                    break
                pending = left
                time.sleep(0.05 * 2**attempt)
            else:
                raise EventsUnavailable(f"events table {self.table_name}: writes throttled")

    def put(self, events: list[Event]) -> int:
        expires = str(int(time.time()) + self.ttl_seconds)
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "user_id": {"S": e.user_id},
                        "sk": {"S": _sort_key(e.timestamp)},
                        "item_id": {"S": e.item_id},
                        "event_type": {"S": e.event_type},
                        "ts": {"N": repr(float(e.timestamp))},
                        "expires_at": {"N": expires},
                    }
                }
            }
            for e in events
        ]
        try:
            self._write(requests)
        except EventsUnavailable:
            raise
        except Exception as exc:  # botocore errors of every kind mean "not stored"
            raise EventsUnavailable(f"events table {self.table_name}: {exc}") from None
        return len(events)

    def _query(self, user_id: str, **kwargs) -> dict:
        return _client().query(
            TableName=self.table_name,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
            **kwargs,
        )

    def recent_items(self, user_id: str, limit: int) -> list[str]:
        """The user's newest `limit` event items, oldest first."""
        try:
            reply = self._query(
                user_id, ScanIndexForward=False, Limit=limit, ProjectionExpression="item_id"
            )
        except Exception as exc:
            raise EventsUnavailable(f"events table {self.table_name}: {exc}") from None
        return [item["item_id"]["S"] for item in reversed(reply.get("Items", []))]

    def delete_user(self, user_id: str) -> int:
        deleted, start = 0, None
        try:
            while True:
                kwargs = {"ProjectionExpression": "user_id, sk"}
                if start:
                    kwargs["ExclusiveStartKey"] = start
                reply = self._query(user_id, **kwargs)
                keys = [
                    {"DeleteRequest": {"Key": {"user_id": i["user_id"], "sk": i["sk"]}}}
                    for i in reply.get("Items", [])
                ]
                self._write(keys)
                deleted += len(keys)
                start = reply.get("LastEvaluatedKey")
                if not start:
                    return deleted
        except EventsUnavailable:
            raise
        except Exception as exc:
            raise EventsUnavailable(f"events table {self.table_name}: {exc}") from None
