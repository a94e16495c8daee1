"""The language model as one bounded queue: one answer runs, `server.queue_size` wait, the next is refused (429).

llama.cpp is a single blocking resource: answers run one at a time in one dedicated thread, off the event loop, so
search, listings and health checks keep being served while a model writes. A queue without a bound would turn a burst
into minutes of waiting and then timeouts; refusing at once with Retry-After lets clients back off. Between two
events the request is checked and, if the client has gone, the thread is told to stop: it closes the pipeline's
generator, which closes llama.cpp's token stream and frees the model for the next answer.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import cast

import anyio
from starlette.requests import Request

from ..answer import Event, Token
from ..errors import BusyError
from .metrics import Metrics

_END = object()


class GenerationQueue:
    """One running answer and at most `waiting` queued ones; `metrics` counts depth, refusals, tokens, cancellations."""

    def __init__(self, waiting: int, metrics: Metrics):
        self.capacity = waiting + 1  # the running answer plus those waiting
        self.metrics = metrics
        self._depth = 0
        self._turn = asyncio.Lock()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rag-generate")  # the one thread llama.cpp runs in
        self._mean_seconds = 5.0  # running mean of an answer's duration, for Retry-After

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: a full queue moves up when the running answer ends."""
        return max(1, min(120, math.ceil(self._mean_seconds)))

    async def events(
        self, make_stream: Callable[[], Generator[Event, None, None]], request: Request
    ) -> AsyncGenerator[Event, None]:
        """The events of `make_stream()` once it is this request's turn; BusyError at once when the queue is full.

        Consume with `async with contextlib.aclosing(...)`: leaving early must close the generator, which releases
        the model and the queue slot.
        """
        if self._depth >= self.capacity:
            self.metrics.rejected.inc()
            raise BusyError(
                f"{self._depth} answers are queued or running, the limit is {self.capacity} "
                "(server.queue_size + 1); retry after the Retry-After delay"
            )
        self._depth += 1
        self.metrics.queue_depth.inc()
        try:
            async with self._turn:
                if await request.is_disconnected():
                    return
                started = anyio.current_time()
                async with aclosing(self._pump(make_stream(), request)) as events:
                    async for event in events:
                        yield event
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * (anyio.current_time() - started)
        finally:
            self._depth -= 1
            self.metrics.queue_depth.dec()

    async def _pump(self, stream: Generator[Event, None, None], request: Request) -> AsyncGenerator[Event, None]:
        """Relay the events that the worker thread produces; on the way out, stop it and wait until it let go of the
        model (shielded: a disconnect cancels this task, and the next answer must not start before)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[object] = asyncio.Queue()  # events, an exception, or _END
        stop = threading.Event()
        worker = loop.run_in_executor(self._thread, _produce, stream, stop, loop, events)
        try:
            while (event := await events.get()) is not _END:
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, Token):
                    self.metrics.tokens.inc()
                yield cast(Event, event)  # neither an exception nor _END: what the pipeline yields
                if await request.is_disconnected():
                    self.metrics.cancelled.inc()
                    return
        except (GeneratorExit, anyio.get_cancelled_exc_class()):  # the response stopped: client gone
            self.metrics.cancelled.inc()
            raise
        finally:
            stop.set()
            with anyio.CancelScope(shield=True):
                await worker

    def close(self) -> None:
        """Stop accepting work for the generation thread; a running answer finishes first."""
        self._thread.shutdown(wait=False)


def _produce(
    stream: Generator[Event, None, None],
    stop: threading.Event,
    loop: asyncio.AbstractEventLoop,
    events: asyncio.Queue[object],
) -> None:
    """Run in the generation thread: iterate the pipeline without ever waiting for the event loop (a busy machine
    would otherwise add a thread wake-up to every token), check `stop` between events, always close the stream."""
    try:
        for event in stream:
            loop.call_soon_threadsafe(events.put_nowait, event)
            if stop.is_set():
                break
    except Exception as exc:  # noqa: BLE001 - handed to the request, which turns it into its HTTP error
        loop.call_soon_threadsafe(events.put_nowait, exc)
    finally:
        stream.close()  # closes llama.cpp's token stream: the model is free
        loop.call_soon_threadsafe(events.put_nowait, _END)
