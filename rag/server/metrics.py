"""Prometheus metrics of one app, in a registry of its own (no process-wide globals: two apps, two registries).

Requests are labelled with the route *template* (`/v1/documents/{doc_id}`), never the raw path: a path carries ids
a caller typed, and the metrics page is readable without a key.
"""

from __future__ import annotations

import re
import time

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The app's counters, gauges and histograms (seconds) in their own registry."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests by route template, method and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "rag_http_request_seconds",
            "time to the end of the response (streams included)",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.retrieval = Histogram(
            "rag_retrieval_seconds",
            "passage retrieval time per request",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "rag_generation_queue_depth", "answers waiting for the language model or running", registry=registry
        )
        self.tokens = Counter("rag_tokens_generated", "tokens written by the language model", registry=registry)
        self.rejected = Counter(
            "rag_generation_rejected", "answers refused (429) because the queue was full", registry=registry
        )
        self.cancelled = Counter(
            "rag_generation_cancelled",
            "generations stopped before their end: the client went away (or the request failed)",
            registry=registry,
        )

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format 0.0.4."""
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting every request and timing it until its last byte is sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it by route template, method and status, and time it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception escaping before the response starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = route_template(scope)
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The path template of the request's route ("/v1/documents/{doc_id}"), "unmatched" when no route takes it. A
    request answered before routing (a 413 from BodyLimit) is matched against the templates of the application's
    OpenAPI schema here, so it is counted under its endpoint too; the label stays a template, whatever was asked."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", "unmatched")
    app = scope.get("app")
    templates = _templates(app) if isinstance(app, FastAPI) else {}
    return next((t for t, pattern in templates.items() if pattern.fullmatch(scope.get("path", ""))), "unmatched")


def _templates(app: FastAPI) -> dict[str, re.Pattern[str]]:
    """{template: its pattern} of the app's documented paths, built once and kept in the app's state."""
    templates = getattr(app.state, "route_templates", None)
    if templates is None:
        templates = app.state.route_templates = {
            template: re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)))
            for template in app.openapi().get("paths", {})
        }
    return templates
