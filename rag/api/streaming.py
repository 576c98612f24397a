"""Blocking generators (search + LLM generation) consumed from the event loop without blocking it."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_END = object()


class ThreadedIterator(AsyncIterator[T]):
    """Runs a sync iterator to completion in its own thread, handing items to the event loop.

    If the consumer goes away (client disconnect), ``aclose`` asks the thread to stop and the
    generator is closed in that thread, so whatever it holds (the LLM lock) is released at once.
    """

    def __init__(self, source: Iterator[T]) -> None:
        self._source = source
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="rag-stream", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: the server is shutting down
            self._stop.set()

    def _produce(self) -> None:
        try:
            for item in self._source:
                if self._stop.is_set():
                    break
                self._put(("item", item))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(("error", exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            self._put(("end", _END))

    def __aiter__(self) -> ThreadedIterator[T]:
        return self

    async def __anext__(self) -> T:
        kind, value = await self._queue.get()
        if kind == "item":
            return value  # type: ignore[no-any-return]
        if kind == "error":
            raise value
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self._stop.set()


def sse(data: Any) -> str:
    """One Server-Sent Event carrying ``data`` as JSON (or a literal such as ``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
