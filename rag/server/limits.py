"""Request size limits, enforced on the bytes as they arrive, before any parser or handler sees the body.

A declared Content-Length over the limit is refused at once (the body is never read); a chunked body is counted and
cut off when it crosses the limit. Either way the answer is 413 and nothing has been stored.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    """Raised into the app from `receive` when the body crosses the limit."""


class BodyLimit:
    """ASGI middleware: `upload_paths` get `upload_bytes` (multipart files), every other request `json_bytes`."""

    def __init__(self, app: ASGIApp, json_bytes: int, upload_bytes: int, upload_paths: frozenset[str]):
        self.app = app
        self.json_bytes = json_bytes
        self.upload_bytes = upload_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body counted; answer 413 instead when it is or turns out too large."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if scope["path"] in self.upload_paths else self.json_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, declared, limit)
            return
        received, exceeded, started = 0, False, False

        async def counting() -> Message:
            nonlocal received, exceeded
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                exceeded = True
                raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            """Once the body was cut off, whatever the app answers (its parser wraps our exception in a 400) is
            replaced by the 413."""
            nonlocal started
            first = message["type"] == "http.response.start" and not started
            started = started or first
            if not exceeded:
                await send(message)
            elif first:
                await _refuse(send, None, limit)

        try:
            await self.app(scope, counting, sending)
        except _TooLarge:
            if not started:
                await _refuse(send, None, limit)


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length in bytes, or None when absent (chunked) or not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, size: int | None, limit: int) -> None:
    """Send the 413 response (`size` and `limit` in bytes; `size` None when only the count crossed the limit)."""
    size_text = f"has {size} bytes" if size is not None else "is larger than that"
    message = (
        f"the request body {size_text}: the limit is {limit} bytes (server.max_request_kb for JSON, "
        "server.max_upload_mb for uploads); send less"
    )
    body = json.dumps({"error": {"message": message, "type": "request_too_large", "code": 413}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
