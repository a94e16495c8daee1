"""Several OpenAI-compatible servers behind one backend: least outstanding requests, cool-down, health probes.

One llama.cpp server generates for one request at a time, so the server with the fewest requests in flight is the one
that answers soonest; counting them here needs no cooperation from the servers (llama.cpp and vLLM alike).

Health checks are lazy: an endpoint that failed a request is skipped for `llm.health_interval_s`, then probed
(GET /v1/models within `llm.probe_timeout_s`) before it gets a request again; a failed probe starts another cool-down.
An idle pool therefore sends nothing, and a healthy one sends nothing but requests. Fail-over itself lives with the
HTTP call (rag/generate.py `OpenAICompatibleLLM`), the only place that knows whether text already reached the caller.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import GenerationError

log = logging.getLogger("rag.endpoints")


class EndpointFailed(Exception):
    """An endpoint failed before it sent any text, so another one may serve the request (never leaves rag/)."""


@dataclass
class Endpoint:
    """One OpenAI-compatible server and its state in the pool."""

    url: str  # base URL without the /v1 suffix
    outstanding: int = 0  # requests in flight, guarded by the pool's lock
    down_until: float = 0.0  # time.monotonic() before which the endpoint gets no requests
    suspect: bool = False  # failed and not probed since: must answer a probe before it gets a request


class EndpointPool:
    """Shared by every request thread of the process: the in-flight counts are only right if all of them use it.

    `urls` are base URLs with or without `/v1`; `cooldown_s` is how long a failed endpoint is left alone and
    `probe_timeout_s` how long its health probe may take (seconds); `headers` go with every probe (e.g. the API key).
    """

    def __init__(self, urls: list[str], *, cooldown_s: float, probe_timeout_s: float, headers: Mapping[str, str]):
        self.endpoints = [Endpoint(url.rstrip("/").removesuffix("/v1")) for url in urls]
        self.cooldown_s = cooldown_s
        self.probe_timeout_s = probe_timeout_s
        self.headers = dict(headers)
        self._lock = threading.Lock()
        self._turn = itertools.count()  # rotates the tie-break so that an idle pool spreads requests round robin

    @contextmanager
    def acquire(self, failures: Mapping[str, str] | None = None) -> Iterator[Endpoint]:
        """The least busy healthy endpoint not in `failures` (url -> why it failed this request), counted in flight.

        Raises GenerationError, naming each endpoint's state, when none is left."""
        endpoint = self._choose(failures or {})
        try:
            yield endpoint
        finally:
            with self._lock:
                endpoint.outstanding -= 1

    def mark_down(self, endpoint: Endpoint, reason: str) -> None:
        """Give `endpoint` no request for `cooldown_s` seconds, then probe it before the next one; logs `reason`."""
        log.warning("language-model endpoint %s left alone for %s s: %s", endpoint.url, self.cooldown_s, reason)
        with self._lock:
            endpoint.down_until = time.monotonic() + self.cooldown_s
            endpoint.suspect = True

    def _choose(self, failures: Mapping[str, str]) -> Endpoint:
        """The endpoint to use, probing suspect ones first; raises GenerationError when none is left."""
        while (endpoint := self._take(failures)) is not None:
            if not endpoint.suspect or self._probe(endpoint):
                return endpoint
            with self._lock:
                endpoint.outstanding -= 1
            self.mark_down(endpoint, "health probe failed")
        raise GenerationError(self._none_left(failures))

    def _take(self, failures: Mapping[str, str]) -> Endpoint | None:
        """Pick and count under one lock, so that concurrent callers see each other's choice."""
        now = time.monotonic()
        with self._lock:
            ready = [e for e in self.endpoints if e.url not in failures and e.down_until <= now]
            if not ready:
                return None
            turn = next(self._turn) % len(ready)
            endpoint = min(ready[turn:] + ready[:turn], key=lambda e: e.outstanding)
            endpoint.outstanding += 1
            return endpoint

    def _probe(self, endpoint: Endpoint) -> bool:
        """Whether `GET /v1/models` succeeds within `probe_timeout_s`; a success clears the suspicion."""
        import httpx

        try:
            ok = httpx.get(f"{endpoint.url}/v1/models", headers=self.headers, timeout=self.probe_timeout_s).is_success
        except httpx.HTTPError:
            return False
        if ok:
            with self._lock:
                endpoint.suspect = False
        return ok

    def _none_left(self, failures: Mapping[str, str]) -> str:
        """The error message when no endpoint can take a request: why each one cannot."""
        now = time.monotonic()
        states = [
            failures.get(e.url) or f"{e.url} failed earlier, next probe in {e.down_until - now:.1f} s"
            for e in self.endpoints
        ]
        return (
            f"no language-model endpoint could take the request: {'; '.join(states)}; check llm.endpoints and "
            "that the servers are running"
        )
