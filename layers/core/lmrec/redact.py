"""Texts that leave the service (5xx bodies, /health) name no store paths, endpoints or
local files; echoes of a caller's input are cut short. The full text goes to the log."""

from __future__ import annotations

import re

MAX_ECHO = 200
_URI = re.compile(r"\b(?:s3|file|https?)://[^\s'\"),;]*")
_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")
_HOST = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b")


def redact(text: str, limit: int = 300) -> str:
    """`text` without URIs, absolute paths or IP endpoints, at most `limit` characters."""
    text = _URI.sub("<store>", text)
    text = _PATH.sub("<path>", text)
    text = _HOST.sub("<endpoint>", text)
    return truncate(text, limit)


def truncate(text: str, limit: int = MAX_ECHO) -> str:
    """At most `limit` characters of an echoed input, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"
