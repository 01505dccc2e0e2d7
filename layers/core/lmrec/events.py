"""Real-time interaction events in DynamoDB: partition key user_id, sort key time#id, TTL.

The next recommendation for a user merges these with the history stored in the bundle, so an
event takes effect on the next request (no retraining)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from boto3.dynamodb.conditions import Key


class EventsUnavailable(RuntimeError):
    """The events table could not be reached or used."""


@dataclass
class Event:
    user_id: str
    item_id: str
    timestamp: float  # unix seconds
    event_type: str = "interaction"


_TABLES: dict[str, object] = {}


def _table(name: str):
    if name not in _TABLES:  # one resource per container, created on first use
        import boto3

        _TABLES[name] = boto3.resource("dynamodb").Table(name)
    return _TABLES[name]


def _sort_key(ts: float) -> str:
    # Fixed-width milliseconds sort as strings; the suffix keeps same-ms events apart.
    return f"{round(ts * 1000):015d}#{uuid.uuid4().hex[:12]}"


class EventStore:
    def __init__(self, table_name: str, ttl_days: int = 90):
        self.table_name = table_name
        self.ttl_seconds = ttl_days * 86400

    def put(self, events: list[Event]) -> int:
        expires = int(time.time()) + self.ttl_seconds
        try:
            with _table(self.table_name).batch_writer() as batch:
                for e in events:
                    batch.put_item(
                        Item={
                            "user_id": e.user_id,
                            "sk": _sort_key(e.timestamp),
                            "item_id": e.item_id,
                            "event_type": e.event_type,
                            "ts": str(e.timestamp),
                            "expires_at": expires,
                        }
                    )
        except Exception as exc:  # botocore errors of every kind mean "not stored"
            raise EventsUnavailable(f"events table {self.table_name}: {exc}") from None
        return len(events)

    def recent_items(self, user_id: str, limit: int) -> list[str]:
        """The user's newest `limit` event items, oldest first."""
        try:
            reply = _table(self.table_name).query(
                KeyConditionExpression=Key("user_id").eq(user_id),
                ScanIndexForward=False,
                Limit=limit,
                ProjectionExpression="item_id",
            )
        except Exception as exc:
            raise EventsUnavailable(f"events table {self.table_name}: {exc}") from None
        return [item["item_id"] for item in reversed(reply.get("Items", []))]

    def delete_user(self, user_id: str) -> int:
        table, deleted, start = _table(self.table_name), 0, None
        try:
            while True:
                kwargs = {
                    "KeyConditionExpression": Key("user_id").eq(user_id),
                    "ProjectionExpression": "user_id, sk",
                }
                if start:
                    kwargs["ExclusiveStartKey"] = start
                reply = table.query(**kwargs)
                with table.batch_writer() as batch:
                    for item in reply.get("Items", []):
                        batch.delete_item(Key={"user_id": item["user_id"], "sk": item["sk"]})
                        deleted += 1
                start = reply.get("LastEvaluatedKey")
                if not start:
                    return deleted
        except Exception as exc:
            raise EventsUnavailable(f"events table {self.table_name}: {exc}") from None
