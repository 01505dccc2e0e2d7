"""Pure-ASGI checks before any routing or parsing: a path that is text, a Content-Length that
can be true, a body within the limit (413 before it is read whole)."""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def raw_paths(scope) -> list:
    """The path as it came, still percent-encoded: uvicorn's raw_path, or the Lambda event's
    (Mangum hands the app a path decoded with errors="replace" and no raw_path)."""
    paths: list = [scope.get("raw_path")]
    event = scope.get("aws.event") or {}
    paths += [event.get("rawPath"), event.get("path")]
    paths.append(((event.get("requestContext") or {}).get("http") or {}).get("path"))
    return [p for p in paths if isinstance(p, bytes | str)]


def path_problem(scope) -> str | None:
    """Ids travel in paths percent-encoded; bytes that are not UTF-8 would decode to U+FFFD,
    so /v1/users/%ff and /v1/users/%fe would both name the user "\ufffd"."""
    for raw in raw_paths(scope):
        try:
            unquote_to_bytes(raw).decode("utf-8")
        except UnicodeError:  # not UTF-8 once decoded, or a lone surrogate in the event
            return "path: not UTF-8 text once percent-decoded"
    return None


def declared_length(scope) -> tuple[int | None, str | None]:
    """(Content-Length, None), (None, None) without one, or (None, why it cannot be true)."""
    values = {v for k, v in scope.get("headers") or [] if k.lower() == b"content-length"}
    if not values:
        return None, None
    if len(values) > 1:
        return None, "Content-Length is given twice, with different values"
    value = values.pop()
    if not value.isdigit():  # bytes: ASCII digits only, so no sign, space or exponent
        return (
            None,
            f"Content-Length must be a number of bytes, not {value[:20].decode('latin-1')!r}",
        )
    return int(value), None


class RequestChecks:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        problem = path_problem(scope)
        if problem:
            return await _reply(send, 422, problem)
        length, problem = declared_length(scope)
        if problem:
            return await _reply(send, 400, problem)
        message = f"request body over {self.max_bytes} bytes"
        if length is not None and length > self.max_bytes:
            return await _reply(send, 413, message)
        # Read the whole body first (Lambda delivers it in one piece anyway), so a body over
        # the limit is refused here rather than half-way through the app's parsing.
        chunks, seen = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunk = msg.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                return await _reply(send, 413, message)
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False
        if length is not None and length != len(body):
            detail = f"Content-Length says {length} bytes, the body has {len(body)}"
            return await _reply(send, 400, detail)

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. http.disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
